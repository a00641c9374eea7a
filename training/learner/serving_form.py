"""A version's serving form: what a serving process would otherwise build for its first decision,
computed once at training and stored beside the version's other files as ``serving.npz``.

Why: building it at load (each booster's JSON dump parsed by ``json.loads`` and flattened, the
QuickScorer exit masks, the vocabularies, the bigram table and the char n-gram index) cost
~190 ms of CPU per 11-candidate version, in steps that held the GIL for 10-35 ms each, so the
worker's requests stalled while a version loaded. Stored, the load reads arrays and turns the
vocabularies into dicts in chunks of at most ``VOCAB_CHUNK`` terms, and the loader
(``artifacts.router_from_files``) sleeps briefly between steps so a waiting request thread
takes the GIL at each step instead of after the interpreter's 5 ms switch interval.

Format: ``np.savez`` of numeric arrays only (read with ``allow_pickle=False``) and one small
JSON document as bytes (``meta``). Vocabularies are UTF-8 terms each ended by ``\\n`` (no term
contains one: tokens are word characters, char n-grams are cut from whitespace-split words),
with the byte offset where each chunk of terms ends. Every array's dtype, shape and index range
is checked at load (``ServingFormError``), so a malformed file is refused, not served.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.learner.char_ngrams import CharNgramIndex, char_ngram_index
from training.learner.forest import MAX_EXIT_LEAVES, ExitMasks, Forest
from training.learner.prompt_text import bigram_table

SERVING_FILE = "serving.npz"
SERVING_FORMAT = 1
VOCAB_CHUNK = 4096  # terms turned into dict entries per step (~0.3 ms)
MAX_VOCAB_CHUNK = 8192  # a stored chunk larger than this is refused
META_MAX_BYTES = 1 << 20
# One array inflated at most (the largest, an 11-model ARC router's projection, is ~5 MB): a
# deflated member is checked by its stated size before it is read.
ARRAY_MAX_BYTES = 1 << 29

_FOREST: dict[str, tuple[Any, int]] = {  # name -> (dtype, dimensions)
    "forest_feature": (np.int64, 1),
    "forest_threshold": (np.float64, 1),
    "forest_left": (np.int64, 1),
    "forest_right": (np.int64, 1),
    "forest_default_left": (np.bool_, 1),
    "forest_missing": (np.int8, 1),
    "forest_value": (np.float64, 1),
    "forest_roots": (np.int64, 1),
    "forest_head_of_tree": (np.int64, 1),
    "forest_sigmoid": (np.float64, 1),
}
_EXITS: dict[str, tuple[Any, int]] = {
    "exits_feature": (np.int64, 2),
    "exits_threshold": (np.float64, 2),
    "exits_left_leaves": (np.uint64, 2),
    "exits_first_leaf": (np.int64, 1),
    "exits_leaf_value": (np.float64, 1),
}
_CHAR_INDEX: dict[str, tuple[Any, int]] = {
    "char_code_of": (np.uint32, 1),
    "char_keys": (np.uint64, 1),
    "char_ids": (np.int32, 1),
}
_VOCAB: dict[str, tuple[Any, int]] = {
    "projection": (np.float32, 2),  # (vocabulary, SVD components + heads)
    "word_terms": (np.uint8, 1),
    "word_term_chunks": (np.int64, 1),
    "char_terms": (np.uint8, 1),
    "char_term_chunks": (np.int64, 1),
}


class ServingFormError(ValueError):
    """The stored serving form is malformed (wrong dtype, shape, size or index range)."""


@dataclass
class ServingForm:
    featurizer_meta: dict[str, Any]  # the featurizer's JSON without its vocabularies
    word_vocab: dict[str, int]
    char_vocab: dict[str, int]
    bigrams: dict[tuple[str, ...], int]
    char_index: CharNgramIndex | None
    forest: Forest | None
    projection: np.ndarray  # float32 (vocabulary, SVD components + heads)


# --- writing, at training ------------------------------------------------------------------------


def _terms(vocabulary: dict[str, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """The terms by id as ``\\n``-ended UTF-8, and where each chunk of them ends (None: a term
    contains a newline or the ids are not 0..n-1, which the format cannot hold)."""
    terms = sorted(vocabulary, key=vocabulary.__getitem__)
    if [vocabulary[t] for t in terms] != list(range(len(terms))) or any("\n" in t for t in terms):
        return None
    ends, size = [], 0
    encoded = [t.encode("utf-8", "surrogatepass") + b"\n" for t in terms]
    for start in range(0, len(encoded), VOCAB_CHUNK):
        size += sum(len(e) for e in encoded[start : start + VOCAB_CHUNK])
        ends.append(size)
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return blob, np.asarray(ends, dtype=np.int64)


def serving_file(featurizer_meta: dict[str, Any], vocabularies: tuple[dict[str, int], ...],
                 ngrams: tuple[int, int], forest: Forest | None,
                 projection: np.ndarray) -> bytes | None:  # fmt: skip
    """``serving.npz`` for a router: ``featurizer_meta`` is the featurizer's JSON (vocabularies
    are left out of it), ``forest`` the heads' forest as a loaded version builds it and
    ``projection`` its SVD components and linear heads' weights by term, float32 as stored.
    None when the vocabularies cannot be stored (the version then loads as older ones do)."""
    arrays: dict[str, np.ndarray] = {"projection": projection}
    for name, vocabulary in zip(("word", "char"), vocabularies, strict=True):
        terms = _terms(vocabulary)
        if terms is None:
            return None
        arrays[f"{name}_terms"], arrays[f"{name}_term_chunks"] = terms
    meta: dict[str, Any] = {
        "format": SERVING_FORMAT,
        "featurizer": {k: v for k, v in featurizer_meta.items() if not k.endswith("_vocab")},
        "forest": None,
        "char_index": None,
    }
    if forest is not None:
        meta["forest"] = {"depth": forest.depth, "zero_missing": forest.zero_missing,
                          "exits": forest.exits is not None}  # fmt: skip
        arrays |= {name: getattr(forest, name.removeprefix("forest_")) for name in _FOREST}
        if forest.exits is not None:
            arrays |= {name: getattr(forest.exits, name.removeprefix("exits_")) for name in _EXITS}
    index = char_ngram_index(vocabularies[1], ngrams)
    if index is not None:
        meta["char_index"] = {"bits": index.bits, "ngrams": list(index.ngrams)}
        arrays |= {"char_code_of": index.code_of, "char_keys": index.keys, "char_ids": index.ids}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    typed = {k: np.asarray(v, dtype=_dtype(k)) for k, v in arrays.items()}
    # Why the ignore: numpy's savez stubs type **kwds as ArrayLike only.
    np.savez(buffer, **typed)  # type: ignore[arg-type]
    return buffer.getvalue()


def _dtype(name: str) -> Any:
    spec = _FOREST.get(name) or _EXITS.get(name) or _CHAR_INDEX.get(name) or _VOCAB.get(name)
    return spec[0] if spec is not None else np.uint8


# --- reading, at load: one short step between yields ---------------------------------------------


def _checked(npz: Any, name: str, spec: tuple[Any, int]) -> np.ndarray:
    if name not in npz.files:
        raise ServingFormError(f"{SERVING_FILE} has no array {name}")
    try:
        size = npz.zip.getinfo(f"{name}.npy").file_size  # before it is inflated
        _require(size <= ARRAY_MAX_BYTES, f"{name} is {size} bytes, over {ARRAY_MAX_BYTES}")
        array = npz[name]
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        # an object array (pickle), a bad header, a damaged or cut-short member
        raise ServingFormError(f"{SERVING_FILE}: {name} cannot be read: {exc}") from exc
    if array.dtype != np.dtype(spec[0]) or array.ndim != spec[1]:
        raise ServingFormError(
            f"{SERVING_FILE}: {name} is {array.dtype} with {array.ndim} dimensions, "
            f"expected {np.dtype(spec[0])} with {spec[1]}"
        )
    return np.asarray(array)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ServingFormError(f"{SERVING_FILE}: {message}")


def _in_range(array: np.ndarray, low: int, high: int) -> bool:
    """Every value in [low, high) (true when empty)."""
    return not array.size or (int(array.min()) >= low and int(array.max()) < high)


def _vocabulary_steps(
    blob: np.ndarray, ends: np.ndarray, size: int, bigrams: dict[tuple[str, ...], int] | None
) -> Generator[None, None, dict[str, int]]:
    """The vocabulary (term -> id) a chunk per step; its bigrams added to ``bigrams``."""
    vocabulary: dict[str, int] = {}
    start = 0
    for end in ends.tolist():
        _require(start <= end <= len(blob), "a vocabulary chunk ends outside its terms")
        try:
            terms = blob[start:end].tobytes().decode("utf-8", "surrogatepass").split("\n")
        except UnicodeDecodeError as exc:
            raise ServingFormError(f"{SERVING_FILE}: a vocabulary is not UTF-8: {exc}") from exc
        _require(terms.pop() == "" and len(terms) <= MAX_VOCAB_CHUNK, "a bad vocabulary chunk")
        first = len(vocabulary)
        chunk = dict(zip(terms, range(first, first + len(terms)), strict=True))
        vocabulary |= chunk
        _require(len(vocabulary) == first + len(terms), "a vocabulary repeats a term")
        if bigrams is not None:
            bigrams |= bigram_table(chunk)
        start = end
        yield
    _require(start == len(blob) and len(vocabulary) == size, "a vocabulary of the wrong size")
    return vocabulary


def _forest(arrays: dict[str, np.ndarray], meta: dict[str, Any], tree_heads: int) -> Forest:
    nodes = len(arrays["forest_feature"])
    _require(all(len(arrays[name]) == nodes for name in list(_FOREST)[:7]), "forest arrays differ")
    trees, depth = len(arrays["forest_roots"]), meta["depth"]
    _require(len(arrays["forest_head_of_tree"]) == trees, "forest trees and heads differ")
    _require(len(arrays["forest_sigmoid"]) == tree_heads, "forest heads differ from the heads")
    _require(
        _in_range(arrays["forest_left"], 0, nodes)
        and _in_range(arrays["forest_right"], 0, nodes)
        and _in_range(arrays["forest_roots"], 0, nodes)
        and _in_range(arrays["forest_head_of_tree"], 0, tree_heads)
        and _in_range(arrays["forest_missing"], 0, 3)
        and _in_range(arrays["forest_feature"], 0, 2**31)
        and isinstance(depth, int)
        and 0 <= depth <= nodes,
        "forest indices out of range",
    )
    exits = _exits(arrays, trees) if meta["exits"] else None
    return Forest(
        feature=arrays["forest_feature"],
        threshold=arrays["forest_threshold"],
        left=arrays["forest_left"],
        right=arrays["forest_right"],
        default_left=arrays["forest_default_left"],
        missing=arrays["forest_missing"],
        value=arrays["forest_value"],
        roots=arrays["forest_roots"],
        head_of_tree=arrays["forest_head_of_tree"],
        sigmoid=arrays["forest_sigmoid"],
        depth=depth,
        zero_missing=bool(meta["zero_missing"]),
        exits=exits,
        derive_exits=False,
    )


def _exits(arrays: dict[str, np.ndarray], trees: int) -> ExitMasks:
    feature, masks = arrays["exits_feature"], arrays["exits_left_leaves"]
    first, values = arrays["exits_first_leaf"], arrays["exits_leaf_value"]
    _require(
        feature.shape == masks.shape == arrays["exits_threshold"].shape
        and feature.shape[1] == trees
        and len(first) == trees,
        "exit mask shapes differ",
    )
    leaves = np.diff(np.append(first, len(values)))  # per tree
    _require(
        _in_range(feature, 0, 2**31) and (not trees or int(first[0]) == 0)
        and _in_range(leaves, 1, MAX_EXIT_LEAVES + 1),
        "exit leaves out of range",
    )  # fmt: skip
    # The exit is the lowest leaf no mask rules out: masks below a tree's last leaf keep it
    # inside the tree's leaves.
    limit = np.left_shift(np.uint64(1), (leaves - 1).astype(np.uint64))
    _require(bool((masks < limit).all()), "exit masks name leaves outside their tree")
    return ExitMasks(feature, arrays["exits_threshold"], masks, first, values)


def _char_index(arrays: dict[str, np.ndarray], meta: dict[str, Any], size: int) -> CharNgramIndex:
    keys, ids, bits = arrays["char_keys"], arrays["char_ids"], meta["bits"]
    _require(
        len(keys) == len(ids)
        and _in_range(ids, 0, size)
        and bool((keys[1:] >= keys[:-1]).all())
        and isinstance(bits, int)
        and 1 <= bits <= 63,
        "the char n-gram index is malformed",
    )
    low, high = (int(n) for n in meta["ngrams"])
    return CharNgramIndex(arrays["char_code_of"], bits, keys, ids, (low, high))


def serving_form_steps(
    content: bytes, word_size: int, char_size: int, tree_heads: int
) -> Generator[None, None, ServingForm]:
    """Read ``serving.npz`` one array or vocabulary chunk per step (the caller pauses at each
    ``yield``); the sizes are what the version's other files say (terms, heads with trees)."""
    try:
        npz = np.load(io.BytesIO(content), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ServingFormError(f"{SERVING_FILE} cannot be read: {exc}") from exc
    with npz:
        raw = _checked(npz, "meta", (np.uint8, 1))
        _require(len(raw) <= META_MAX_BYTES, "its metadata is too large")
        try:
            meta = json.loads(raw.tobytes())
        except ValueError as exc:  # not UTF-8, not JSON
            raise ServingFormError(f"{SERVING_FILE}: its metadata is not JSON: {exc}") from exc
        _require(isinstance(meta, dict), "its metadata is not an object")
        _require(meta.get("format") == SERVING_FORMAT, f"unknown format {meta.get('format')!r}")
        wanted = dict(_VOCAB)
        if meta["forest"] is not None:
            wanted |= _FOREST | (_EXITS if meta["forest"]["exits"] else {})
        if meta["char_index"] is not None:
            wanted |= _CHAR_INDEX
        arrays = {}
        for name, spec in wanted.items():
            arrays[name] = _checked(npz, name, spec)
            yield
    bigrams: dict[tuple[str, ...], int] = {}
    words = yield from _vocabulary_steps(
        arrays["word_terms"], arrays["word_term_chunks"], word_size, bigrams
    )
    chars = yield from _vocabulary_steps(
        arrays["char_terms"], arrays["char_term_chunks"], char_size, None
    )
    forest = None
    if meta["forest"] is not None:
        forest = _forest(arrays, meta["forest"], tree_heads)
    else:
        _require(tree_heads == 0, "no forest for heads with trees")
    index = (
        None if meta["char_index"] is None else _char_index(arrays, meta["char_index"], char_size)
    )
    _require(len(arrays["projection"]) == word_size + char_size, "a projection of another size")
    return ServingForm(
        meta["featurizer"], words, chars, bigrams, index, forest, arrays["projection"]
    )


def forest_check(forest: Forest | None, dense_size: int) -> None:
    """The forest reads only features the featurizer makes."""
    if forest is None:
        return
    top = [int(forest.feature.max(initial=0))]
    if forest.exits is not None:
        top.append(int(forest.exits.feature.max(initial=0)))
    _require(max(top) < max(dense_size, 1), "the forest reads features the featurizer lacks")
