"""The prompt estimate a request is billed when its provider sends no usable count (a timeout with
the request sent, a client leaving, a count that cannot be true) is central: near what a real
tokenizer counts, whatever the script, and never above the hold's bound.

Before, it was characters ÷ 3 (+16 a message): an English prompt was billed ~1.3-1.6x what
GPT-4o's tokenizer counts (a repetitive one ~1.8x: 6,914 for a prompt the provider counted
3,907), and CJK text ~0.55x.

The counts below are o200k_base's (GPT-4o's tokenizer) and cl100k_base's (GPT-4's), measured
once for these texts (tiktoken-compatible, README "A prompt's estimate"); a chat message adds
~7 template tokens to them.
"""

from __future__ import annotations

import pytest

from routing.gateway.token_bounds import estimate_prompt_tokens, prompt_token_bound

TEXTS = {
    "english": (
        "Our team is planning a three-day trip to the coast next month. We would like to visit "
        "the lighthouse on the first morning, spend the afternoon at the harbour museum, and "
        "find a quiet restaurant that serves fresh fish for dinner. On the second day, the plan "
        "is to rent bicycles and follow the cliff path to the next village, stopping for a picnic "
        "if the weather allows. Could you suggest what we should pack, how early we should book "
        "the bicycles, and whether there are any tides or closures we need to keep in mind? "
        "Please keep the answer short, with a list for the packing and a sentence for each day."
    ),
    "code": (
        "def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:\n"
        '    """Merge overlapping intervals and return them sorted by start."""\n'
        "    merged: list[tuple[int, int]] = []\n"
        "    for start, end in sorted(intervals):\n"
        "        if merged and start <= merged[-1][1]:\n"
        "            merged[-1] = (merged[-1][0], max(merged[-1][1], end))\n"
        "        else:\n"
        "            merged.append((start, end))\n"
        "    return merged\n\n\n"
        "Why does this function return [(1, 6)] for [(1, 3), (2, 6)] but fail on an empty list "
        "when I call merged[-1] elsewhere? Add type-checked tests with pytest for both cases."
    ),
    "chinese": (
        "我们公司下个月要在上海举办一场关于人工智能的研讨会，预计有两百位来宾参加。请帮我写一份简短的"
        "邀请函，说明会议的时间、地点和主要议题，并提醒来宾提前一周通过电子邮件确认出席。另外，请列出"
        "会议当天需要准备的物品清单，包括签到表、名牌、投影设备和茶歇点心。语气要正式但友好。"
    ),
    "japanese": (
        "来週の月曜日に新しいプロジェクトの説明会を開く予定です。参加者は営業部と開発部の約三十名です。"
        "会議の目的、議題、そして事前に準備してほしい資料について、丁寧なお知らせのメールを書いてください。"
        "また、会議室の予約とオンライン参加用のリンクについても一言添えてください。"
    ),
    "russian": (
        "Мы планируем открыть небольшую кофейню в центре города и хотим составить простой бизнес-план. "
        "Помогите, пожалуйста, перечислить основные статьи расходов на первый год, примерную выручку "
        "при ста посетителях в день и риски, о которых стоит подумать заранее. Ответ нужен кратким, "
        "в виде списка с короткими пояснениями."
    ),
}

# text: (o200k_base, cl100k_base) tokens of the text alone
COUNTS = {
    "english": (126, 128),
    "code": (156, 154),
    "chinese": (100, 149),
    "japanese": (87, 143),
    "russian": (75, 144),
}
TEMPLATE = 7  # a user message's template tokens, as OpenAI counts them


def _body(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.mark.parametrize("name", list(TEXTS))
def test_the_billed_estimate_is_near_a_real_count_and_within_the_hold(name: str) -> None:
    text = TEXTS[name]
    o200k, _ = COUNTS[name]
    estimate = estimate_prompt_tokens(_body(text))

    assert 0.85 <= estimate / (o200k + TEMPLATE) <= 1.25, estimate
    assert estimate <= prompt_token_bound(_body(text))  # the hold still bounds it


def test_over_every_script_the_estimate_lies_between_two_real_tokenizers() -> None:
    """Summed over the texts: no more than cl100k_base counts, and no less than o200k_base."""
    estimated = sum(estimate_prompt_tokens(_body(text)) for text in TEXTS.values())
    frugal = sum(o200k + TEMPLATE for o200k, _ in COUNTS.values())
    older = sum(cl100k + TEMPLATE for _, cl100k in COUNTS.values())

    assert frugal <= estimated <= older
