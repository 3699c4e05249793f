from __future__ import annotations

import pytest

from heisenberg.llm.prompts import PERSONALITY_PROMPTS, PromptBuilder, Turn, approx_tokens

HISTORY = [Turn("Hi", "Hello!"), Turn("Capital of France?", "Paris.")]


def build(fmt: str, history: list[Turn] = HISTORY) -> PromptBuilder:
    return PromptBuilder(fmt, system_prompt="Be brief.")


def test_plain() -> None:
    prompt = build("plain").build("And Spain?", HISTORY)
    assert prompt.text == ("System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\n"
                           "User: Capital of France?\n\nAssistant: Paris.\n\n"
                           "User: And Spain?\n\nAssistant:")
    assert prompt.stop == ["User:", "System:"]


def test_chatml() -> None:
    prompt = build("chatml").build("And Spain?", HISTORY[:1])
    assert prompt.text == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                           "<|im_start|>user\nHi<|im_end|>\n"
                           "<|im_start|>assistant\nHello!<|im_end|>\n"
                           "<|im_start|>user\nAnd Spain?<|im_end|>\n"
                           "<|im_start|>assistant\n")


def test_llama2() -> None:
    assert build("llama2").build("Hi", []).text == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]")
    assert build("llama2").build("And Spain?", HISTORY[:1]).text == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s>"
        "<s>[INST] And Spain? [/INST]")


def test_gemma_puts_system_into_first_user_turn() -> None:
    assert build("gemma").build("And Spain?", HISTORY[:1]).text == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nAnd Spain?<end_of_turn>\n"
        "<start_of_turn>model\n")
    assert build("gemma").build("Hi", []).text == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n")


def test_openai_messages() -> None:
    prompt = build("openai").build("And Spain?", HISTORY[:1])
    assert prompt.text == ""
    assert prompt.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And Spain?"},
    ]


@pytest.mark.parametrize("name", sorted(PERSONALITY_PROMPTS))
def test_personalities_differ_and_custom_prompt_wins(name: str) -> None:
    assert PromptBuilder("plain", name).system == PERSONALITY_PROMPTS[name]
    assert PromptBuilder("plain", name, system_prompt="X").system == "X"
    assert len(set(PERSONALITY_PROMPTS.values())) == len(PERSONALITY_PROMPTS) >= 5


def test_history_limited_by_turns() -> None:
    turns = [Turn(f"q{i}", f"a{i}") for i in range(10)]
    kept = PromptBuilder("plain", max_turns=3).select_history(turns)
    assert [t.user for t in kept] == ["q7", "q8", "q9"]
    assert PromptBuilder("plain", max_turns=0).select_history(turns) == ()


def test_history_limited_by_token_budget_keeps_newest() -> None:
    long_turn = Turn("x" * 400, "y" * 400)  # ~200 tokens
    turns = [long_turn, Turn("q1", "a1"), Turn("q2", "a2")]
    kept = PromptBuilder("plain", max_turns=10, max_history_tokens=50).select_history(turns)
    assert [t.user for t in kept] == ["q1", "q2"]
    assert approx_tokens("abcd") == 1 and approx_tokens("abcde") == 2


def test_unknown_format_rejected() -> None:
    with pytest.raises(ValueError, match="xml"):
        PromptBuilder("xml")
