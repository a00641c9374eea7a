"""MMLU with its subjects for the quality-only benchmark ``quality_mmlu`` (``bench/router.py``).

``routellm_mmlu.csv`` (RouteLLM's MMLU responses of Mixtral-8x7B-Instruct and GPT-4-1106) has no
subject column, but it is RouteLLM's 57 per-subject files
(``routellm/evals/mmlu/responses/mmlu_<subject>.csv``) concatenated in sorted subject order with
RouteLLM's 5 contaminated prompts removed, so a row's subject follows from its position.
``MMLU_SUBJECT_ROWS`` is that public metadata — MMLU's test-split size per subject minus the
contaminated prompts (one each in college_chemistry, electrical_engineering,
high_school_european_history, high_school_microeconomics and machine_learning) — not data: no
row of the file is copied here.
A file of any other length is refused rather than labelled wrongly.

Each row is labelled ``mmlu/<subject>`` (``training/learner/task_labels.py``): one benchmark, 57
subtasks, so the learner's *subtasks* family (each subject's best model shrunk toward MMLU's)
competes out of fold with the clusters; flat subject names would instead make 57 unrelated tasks
with no parent to shrink toward, and leave the subtask machinery untested.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

MMLU_WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
MMLU_STRONG = "gpt-4-1106-preview"
MMLU_PARENT = "mmlu"
SPLIT_SEED = 0

# (subject, rows in routellm_mmlu.csv), in the file's (sorted) order: 57 subjects, 14,037 rows.
MMLU_SUBJECT_ROWS: tuple[tuple[str, int], ...] = (
    ("abstract_algebra", 100),
    ("anatomy", 135),
    ("astronomy", 152),
    ("business_ethics", 100),
    ("clinical_knowledge", 265),
    ("college_biology", 144),
    ("college_chemistry", 99),
    ("college_computer_science", 100),
    ("college_mathematics", 100),
    ("college_medicine", 173),
    ("college_physics", 102),
    ("computer_security", 100),
    ("conceptual_physics", 235),
    ("econometrics", 114),
    ("electrical_engineering", 144),
    ("elementary_mathematics", 378),
    ("formal_logic", 126),
    ("global_facts", 100),
    ("high_school_biology", 310),
    ("high_school_chemistry", 203),
    ("high_school_computer_science", 100),
    ("high_school_european_history", 164),
    ("high_school_geography", 198),
    ("high_school_government_and_politics", 193),
    ("high_school_macroeconomics", 390),
    ("high_school_mathematics", 270),
    ("high_school_microeconomics", 237),
    ("high_school_physics", 151),
    ("high_school_psychology", 545),
    ("high_school_statistics", 216),
    ("high_school_us_history", 204),
    ("high_school_world_history", 237),
    ("human_aging", 223),
    ("human_sexuality", 131),
    ("international_law", 121),
    ("jurisprudence", 108),
    ("logical_fallacies", 163),
    ("machine_learning", 111),
    ("management", 103),
    ("marketing", 234),
    ("medical_genetics", 100),
    ("miscellaneous", 783),
    ("moral_disputes", 346),
    ("moral_scenarios", 895),
    ("nutrition", 306),
    ("philosophy", 311),
    ("prehistory", 324),
    ("professional_accounting", 282),
    ("professional_law", 1534),
    ("professional_medicine", 272),
    ("professional_psychology", 612),
    ("public_relations", 110),
    ("security_studies", 245),
    ("sociology", 201),
    ("us_foreign_policy", 100),
    ("virology", 166),
    ("world_religions", 171),
)
MMLU_ROWS = sum(rows for _, rows in MMLU_SUBJECT_ROWS)


def mmlu_subjects(rows: int) -> list[str]:
    """Each row's subject in a file of ``rows`` rows; a file of another length is refused."""
    if rows != MMLU_ROWS:
        raise ValueError(
            f"routellm_mmlu.csv has {rows:,} rows, not the {MMLU_ROWS:,} whose subjects are known "
            "(RouteLLM's 57 MMLU subject files in sorted order, 5 contaminated prompts removed)"
        )
    return [subject for subject, count in MMLU_SUBJECT_ROWS for _ in range(count)]


def mmlu_labelled(path: Path) -> pd.DataFrame:
    """The file with a ``task`` column ``mmlu/<subject>`` and its duplicate prompts dropped (the
    first kept, as the service's upload does), so no prompt is on both sides of a split."""
    import pandas as pd

    frame = pd.read_csv(path)
    frame["task"] = [f"{MMLU_PARENT}/{s}" for s in mmlu_subjects(len(frame))]
    frame = frame[["prompt", "task", MMLU_WEAK, MMLU_STRONG]]
    return frame.drop_duplicates("prompt").reset_index(drop=True)


def split_by_task(frame: pd.DataFrame, seed: int = SPLIT_SEED) -> dict[str, pd.DataFrame]:
    """Train and test halves stratified by ``task``: each task's rows shuffled (numpy seed
    ``seed``), the first half (rounded down) to test, the rest to train (``fold_ids``' 2 folds)."""
    from bench.router_crossfit import fold_frames, fold_ids

    return fold_frames(frame, fold_ids(frame["task"].to_numpy(), 2, seed), 0)
