"""Migrating from UbiOps: ``POST /api/v1/pipelines/import`` takes a UbiOps pipeline version (its
objects and attachments, shaped as UbiOps' API and exports give them) and a deployment → model
mapping, creates the equivalent series or parallel pipeline, and serves it as ``pipeline/<slug>``
through the official ``openai`` SDK against the fake upstream; what has no equivalent is a 400
naming the UbiOps object, with nothing created."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import KeyScope, Role
from routing.fake_upstream.answers import answer_text
from routing.models import Pipeline
from tests.factories import key_client, key_make, member_add, organization_make
from tests.routing.world import World, base_catalog, endpoint, model
from training.serving import Router

URL = "/api/v1/pipelines/import"
PROMPT = "Describe green tea for a shop label"
TEXT = [{"name": "prompt", "data_type": "string"}]


def catalog(world: World) -> None:
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/writer"))
    data["endpoints"].append(endpoint("test/writer", "fake-openai-b", "gpt-5", "5", "20"))
    world.catalog(data)


def deployment(name: str, reference: str | None = None) -> dict[str, Any]:
    return {"name": name, "reference_type": "deployment", "reference_name": reference or name,
            "reference_version": "v1"}  # fmt: skip


def attach(destination: str, *sources: str) -> dict[str, Any]:
    mapping = [{"source_field_name": "prompt", "destination_field_name": "prompt"}]
    return {"destination_name": destination,
            "sources": [{"source_name": s, "mapping": mapping} for s in sources]}  # fmt: skip


def version(objects: list[dict[str, Any]], attachments: list[dict[str, Any]]) -> dict[str, Any]:
    """A pipeline version as UbiOps exports it (pipeline fields beside version, objects and
    attachments)."""
    return {"pipeline_name": "support", "input_type": "structured", "input_fields": TEXT,
            "output_type": "structured", "output_fields": TEXT, "version_name": "v1",
            "objects": objects, "attachments": attachments}  # fmt: skip


CHAIN = version(
    [deployment("draft", "drafter"), deployment("refine", "refiner")],
    [
        attach("draft", "pipeline_start"),
        attach("refine", "draft"),
        attach("pipeline_end", "refine"),
    ],
)
FAN = version(
    [deployment("a", "claude-dep"), deployment("b", "gpt-dep"), deployment("merge", "merger")],
    [attach("a", "pipeline_start"), attach("b", "pipeline_start"), attach("merge", "a", "b"),
     attach("pipeline_end", "merge")],
)  # fmt: skip
MAPPING = {"drafter": "test/gpt", "refiner": "test/writer", "claude-dep": "test/claude",
           "gpt-dep": "test/gpt", "merger": "test/writer"}  # fmt: skip


def import_(world: World, slug: str, ubiops: Any, **more: Any) -> Any:
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    body = {"slug": slug, "ubiops": ubiops, "deployments": MAPPING, **more}
    return admin.post(URL, body, format="json")


def ask(world: World, slug: str) -> Any:
    client = world.openai_client()
    return client.chat.completions.create(
        model=f"pipeline/{slug}", messages=[{"role": "user", "content": PROMPT}]
    )


def test_a_chain_of_deployments_is_imported_as_a_series_and_served(world: World) -> None:
    catalog(world)

    response = import_(world, "support", CHAIN)

    assert response.status_code == 201, response.content
    assert (response.json()["kind"], response.json()["steps"]) == (
        "series",
        [{"model": "test/gpt"}, {"model": "test/writer"}],
    )
    completion = ask(world, "support")
    draft = answer_text("gpt-4o-mini", PROMPT)
    sent = world.upstream_requests("/v1/chat/completions")
    assert sent[1]["body"]["messages"][-1]["content"] == draft  # the draft is the next input
    assert completion.choices[0].message.content == answer_text("gpt-5", draft)
    assert [s["model"] for s in completion.model_extra["pipeline"]["steps"]] == [
        "test/gpt",
        "test/writer",
    ]


def test_a_fan_out_joined_by_a_deployment_is_a_parallel_pipeline_it_synthesizes(
    world: World,
) -> None:
    catalog(world)

    response = import_(world, "fused", FAN)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["steps"]) == (
        "parallel",
        [{"model": "test/claude"}, {"model": "test/gpt"}],
    )
    assert body["aggregate"] == {"type": "synthesize", "model": "test/writer"}
    completion = ask(world, "fused")
    prompt = world.upstream_requests("/v1/chat/completions")[-1]["body"]["messages"][0]["content"]
    assert answer_text("claude-sonnet-4-5", PROMPT) in prompt  # both answers, to synthesize
    assert answer_text("gpt-4o-mini", PROMPT) in prompt
    assert completion.choices[0].message.content == answer_text("gpt-5", prompt)
    assert completion.model == "test/writer"


def test_a_fan_out_joined_at_pipeline_end_takes_the_aggregate_given(world: World) -> None:
    catalog(world)
    fan = version(
        [deployment("a", "claude-dep"), deployment("b", "gpt-dep")],
        [attach("a", "pipeline_start"), attach("b", "pipeline_start"),
         attach("pipeline_end", "a", "b")],
    )  # fmt: skip

    without = import_(world, "vote", fan)
    response = import_(world, "vote", fan, aggregate={"type": "fastest"})

    assert without.status_code == 400 and "say how to combine" in str(without.json())
    assert response.status_code == 201, response.content
    assert response.json()["aggregate"] == {"type": "fastest"}
    assert ask(world, "vote").choices[0].message.content


def operator(name: str, reference: str) -> dict[str, Any]:
    return {"name": name, "reference_type": "operator", "reference_name": reference,
            "configuration": {"expression": "prompt != ''", "input_fields": TEXT,
                              "output_fields": []}}  # fmt: skip


REFUSED = [
    (version([deployment("draft", "drafter"), operator("check", "if-condition")],
             [attach("draft", "pipeline_start"), attach("check", "draft"),
              attach("pipeline_end", "check")]),
     "ubiops.objects.check", "operator 'if-condition': it routes on request fields"),
    (version([deployment("draft", "drafter"), operator("calc", "function")],
             [attach("calc", "pipeline_start"), attach("draft", "calc"),
              attach("pipeline_end", "draft")]),
     "ubiops.objects.calc", "operator 'function'"),
    (version([deployment("draft", "drafter"), operator("split", "one-to-many")],
             [attach("split", "pipeline_start"), attach("draft", "split"),
              attach("pipeline_end", "draft")]),
     "ubiops.objects.split", "RouterHub has no subrequests"),
    (version([deployment("draft", "drafter"), operator("mine", "my-own-operator")],
             [attach("mine", "pipeline_start"), attach("draft", "mine"),
              attach("pipeline_end", "draft")]),
     "ubiops.objects.mine", "custom operators have no RouterHub equivalent"),
    (version([deployment("draft", "unknown-dep")],
             [attach("draft", "pipeline_start"), attach("pipeline_end", "draft")]),
     "ubiops.objects.draft", "deployment 'unknown-dep' is not in deployments"),
    (version([deployment("draft", "drafter"), deployment("refine", "refiner")],
             [attach("draft", "pipeline_start", "refine"), attach("refine", "draft"),
              attach("pipeline_end", "refine")]),
     "ubiops.objects.draft", "is in a cycle"),
    (version([deployment("draft", "drafter"), deployment("idle", "refiner")],
             [attach("draft", "pipeline_start"), attach("pipeline_end", "draft")]),
     "ubiops.objects.idle", "is not attached"),
    (version([deployment("draft", "drafter"), deployment("refine", "refiner")],
             [attach("draft", "pipeline_start"), attach("refine", "draft", "pipeline_start"),
              attach("pipeline_end", "refine")]),
     "ubiops.objects.refine", "has 2 source(s)"),
    ({**CHAIN, "input_fields": [{"name": "image", "data_type": "file"}]},
     "ubiops.input_fields", "field 'image' is file, not string"),
    ({**CHAIN, "output_fields": TEXT * 2}, "ubiops.output_fields", "this pipeline has 2 output"),
    ({**CHAIN, "objects": [{"name": "sub", "reference_type": "pipeline",
                            "reference_name": "other"}]},
     "ubiops.objects.sub", "a RouterHub pipeline cannot call a pipeline"),
    ({**FAN, "objects": [*FAN["objects"][:2], deployment("merge", "router-dep")]},
     "ubiops.objects.merge", "unknown model 'router/mine'"),
    ({**FAN, "attachments": [*FAN["attachments"][:2],
                             {**attach("merge", "a", "b"), "sources": [
                                 attach("merge", "a")["sources"][0],
                                 {"source_name": "b", "mapping": [
                                     {"source_field_name": "prompt",
                                      "destination_field_name": "context"}]}]},
                             FAN["attachments"][3]]},
     "ubiops.attachments[2]", "its sources map 'prompt' and 'context'"),
    ({**FAN, "attachments": [*FAN["attachments"][:2],
                             {**attach("merge", "a", "b"), "sources": [
                                 attach("merge", "a")["sources"][0], {"source_name": "b"}]},
                             FAN["attachments"][3]]},
     "ubiops.attachments[2]", "source 'b' maps 0 fields"),
    ({**CHAIN, "objects": [deployment(str(i)) for i in range(65)]}, "ubiops.objects",
     "1 to 64 pipeline objects"),
    ({**CHAIN, "attachments": [{"destination_name": ["draft"], "sources": []}]},
     "ubiops.attachments[0]", "unknown destination"),
    ({**CHAIN, "attachments": [{"destination_name": "draft", "sources": [{"source_name": {}}]}]},
     "ubiops.attachments[0]", "unknown source"),
]  # fmt: skip


def mapped(out: str, into: str) -> list[dict[str, str]]:
    return [{"source_field_name": out, "destination_field_name": into}]


def chain_with(index: int, mapping: Any, **fields: Any) -> dict[str, Any]:
    """CHAIN with attachment ``index``'s mapping replaced, and fields declared on its objects
    (``draft_input_fields=[…]``: the deployment's own fields, as UbiOps' deployment details give
    them)."""
    attachments = [dict(a) for a in CHAIN["attachments"]]
    source = attachments[index]["sources"][0]
    attachments[index]["sources"] = [{**source, "mapping": mapping}]
    objects = [dict(o) for o in CHAIN["objects"]]
    for name, value in fields.items():
        owner, side = name.split("_", 1)
        next(o for o in objects if o["name"] == owner)[side] = value
    return {**CHAIN, "objects": objects, "attachments": attachments}


NUMBER = [{"name": "count", "data_type": "int"}]
MAPPING_REFUSED = [
    (chain_with(0, mapped("question", "prompt")), "ubiops.attachments[0]",
     "'pipeline_start' has no output field 'question' (its fields: prompt)"),
    (chain_with(2, mapped("prompt", "answer")), "ubiops.attachments[2]",
     "'pipeline_end' has no input field 'answer' (its fields: prompt)"),
    (chain_with(1, mapped("answer", "prompt"), draft_output_fields=TEXT), "ubiops.attachments[1]",
     "(draft → refine): 'draft' has no output field 'answer'"),
    (chain_with(1, mapped("prompt", "text"), refine_input_fields=TEXT), "ubiops.attachments[1]",
     "'refine' has no input field 'text'"),
    (chain_with(0, mapped("prompt", "count"), draft_input_fields=NUMBER),
     "ubiops.attachments[0]", "field 'prompt' (string) of 'pipeline_start' is mapped to 'count' "
     "(int) of 'draft'; the types must match"),
    (chain_with(1, [{"source_field_name": "prompt"}]), "ubiops.attachments[1]",
     "mapping must be a list"),
    (chain_with(1, mapped("prompt", "prompt"), draft_output_fields="prompt"),
     "ubiops.objects.draft.output_fields", "must be a list"),
]  # fmt: skip


@pytest.mark.parametrize(("ubiops", "param", "message"), REFUSED + MAPPING_REFUSED)
def test_what_has_no_routerhub_equivalent_is_refused_naming_the_object(
    world: World, ubiops: dict[str, Any], param: str, message: str
) -> None:
    catalog(world)
    Router.objects.create(organization=world.organization, slug="mine", candidates=["a", "b"])
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    body = {"slug": "p", "ubiops": ubiops,
            "deployments": {**MAPPING, "router-dep": "router/mine"}}  # fmt: skip

    response = admin.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["param"], message in error["message"]) == (param, True), error
    assert not Pipeline.objects.filter(organization=world.organization).exists()


def test_a_mapping_to_another_organizations_router_is_refused_as_an_unknown_one(
    world: World,
) -> None:
    catalog(world)
    Router.objects.create(organization=organization_make(), slug="theirs", candidates=["a", "b"])
    Router.objects.create(organization=world.organization, slug="ours", candidates=["a", "b"])

    def mapped(slug: str, router: str) -> Any:
        return import_(world, slug, CHAIN, deployments={**MAPPING, "drafter": router})

    theirs, nowhere = mapped("a", "router/theirs"), mapped("b", "router/nowhere")
    ours = mapped("c", "router/ours")

    for response, name in ((theirs, "theirs"), (nowhere, "nowhere")):
        assert response.status_code == 400
        assert response.json()["error"]["message"] == (
            f"object 'draft': steps[0].model: no router 'router/{name}' in this organization; "
            "routers: ours."
        )
    assert ours.status_code == 201 and ours.json()["steps"][0] == {"model": "router/ours"}


def test_import_needs_the_authority_of_pipeline_create(world: World) -> None:
    catalog(world)
    body = {"slug": "p", "ubiops": CHAIN, "deployments": MAPPING}
    inference = key_client(world.key_for(scope=KeyScope.INFERENCE))
    member = member_add(world.organization, Role.MEMBER)
    as_member = key_client(key_make(world.organization, scope=KeyScope.MANAGE, created_by=member))

    assert inference.post(URL, body, format="json").status_code == 403
    assert as_member.post(URL, body, format="json").status_code == 403
    assert not Pipeline.objects.exists()
    assert import_(world, "p", CHAIN).status_code == 201
    assert import_(world, "p", CHAIN).status_code == 409  # the slug is taken, as on create


def test_a_body_past_the_import_limit_is_refused_before_it_is_read(world: World) -> None:
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    padding = "x" * (300 * 1024)

    response = admin.post(URL, {"slug": "p", "ubiops": {**CHAIN, "note": padding},
                                "deployments": MAPPING}, format="json")  # fmt: skip

    assert response.status_code == 413, response.content
    assert not Pipeline.objects.exists()


def test_the_slug_import_is_reserved_for_the_endpoint(world: World) -> None:
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    body = {"slug": "import", "kind": "series", "steps": [{"model": "test/gpt"}]}

    response = admin.post("/api/v1/pipelines", body, format="json")

    assert response.status_code == 400 and "reserved" in str(response.json())


def test_a_pipeline_named_import_from_before_the_reservation_is_still_served(world: World) -> None:
    """The slug is reserved where pipelines are made (``pipeline_create``: the API and the
    dashboard form alike), yet a pipeline named ``import`` made before can still be read and
    deleted at ``/api/v1/pipelines/import``, whose POST stays the import."""
    from routing.pipeline_api import pipeline_create, pipeline_version_add
    from tests.factories import dashboard_client

    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    old = Pipeline.objects.create(organization=world.organization, slug="import", name="Old")
    pipeline_version_add(old, "series", [{"model": "test/gpt"}])
    owner = world.organization.memberships.get(role=Role.OWNER).user
    form = dashboard_client(owner, world.organization).post(
        "/dashboard/pipelines/", {"slug": "import", "name": "", "definition": '{"kind": "series", '
                                  '"steps": [{"model": "test/gpt"}]}'})  # fmt: skip
    with pytest.raises(Exception, match="reserved") as raised:
        pipeline_create(world.organization, slug="import", name="", definition={})

    assert getattr(raised.value, "param", None) == "slug"
    assert form.status_code == 200 and "reserved" in form.content.decode()
    got = admin.get(URL)
    assert got.status_code == 200 and got.json()["name"] == "Old", got.content
    assert admin.put(URL, {}, format="json").status_code == 405
    assert admin.delete(URL).status_code == 204
    assert admin.get(URL).status_code == 404
    assert not Pipeline.objects.exists()


def test_an_aggregate_error_of_a_deployment_join_names_the_users_aggregate(world: World) -> None:
    """Joined by a deployment, the aggregate's model is that deployment's (an error in it names
    the object), but the rest is the request's ``aggregate``: its errors name that field."""
    catalog(world)

    response = import_(world, "p", FAN, aggregate={"type": "synthesize", "template": "{nope}"})

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "aggregate.template", response.json()
    assert not Pipeline.objects.exists()


def test_mappings_between_declared_fields_of_one_type_are_imported(world: World) -> None:
    catalog(world)
    declared = chain_with(1, mapped("answer", "prompt"), draft_input_fields=TEXT,
                          draft_output_fields=[{"name": "answer", "data_type": "string"}],
                          refine_input_fields=TEXT, refine_output_fields=TEXT)  # fmt: skip

    response = import_(world, "p", declared)

    assert response.status_code == 201, response.content
    assert [s["model"] for s in response.json()["steps"]] == ["test/gpt", "test/writer"]
