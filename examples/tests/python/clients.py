"""The official `openai` and `anthropic` Python packages against `foundation sim-provider`.

Run by examples/tests/python_clients.rs with OPENAI_BASE_URL / ANTHROPIC_BASE_URL pointing at a
running sim-provider (and LIMITED_BASE_URL at one with `--rpm 1`). Each check prints `ok NAME`;
any failure raises, which exits non-zero with the traceback.
"""

import json
import os

import anthropic
import jsonschema
import openai
import pydantic

BASE = os.environ["OPENAI_BASE_URL"]
client = openai.OpenAI(base_url=BASE, api_key="sk-test", max_retries=0)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
FEW_SHOT = (
    "Capitals.\n---\nCountry: France\nCapital: Paris\n---\nCountry: Italy\nCapital: Rome\n"
    "---\nCountry: France\nCapital:"
)


def check(name):
    def wrap(f):
        f()
        print("ok", name, flush=True)
        return f

    return wrap


@check("chat")
def _():
    r = client.chat.completions.create(
        model="gpt-sim", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": FEW_SHOT}]
    )
    assert r.choices[0].message.content == "Capital: Paris", r
    assert r.choices[0].finish_reason == "stop", r
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage
    assert r.usage.prompt_tokens_details.cached_tokens == 0, r.usage
    assert r.model == "gpt-sim", r.model


@check("cached prompt tokens")
def _():
    system = "You are a careful assistant who answers questions about the weather. " * 100
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Is it cold?"}]
    first = client.chat.completions.create(model="gpt-sim", messages=messages)
    messages += [{"role": "assistant", "content": first.choices[0].message.content}, {"role": "user", "content": "Tomorrow?"}]
    again = client.chat.completions.create(model="gpt-sim", messages=messages)
    cached = again.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024 and cached % 128 == 0 and cached < again.usage.prompt_tokens, again.usage


@check("content parts and stop sequences")
def _():
    r = client.chat.completions.create(
        model="gpt-sim",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe this picture."},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
                ],
            }
        ],
        stop=["more"],
        seed=7,
    )
    assert "more" not in r.choices[0].message.content, r


@check("tools")
def _():
    messages = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
    r = client.chat.completions.create(model="gpt-sim", messages=messages, tools=[WEATHER])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather", call
    args = json.loads(call.function.arguments)
    assert args == {"city": "Paris", "unit": "celsius"}, args
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"})
    r = client.chat.completions.create(model="gpt-sim", messages=messages, tools=[WEATHER])
    assert r.choices[0].finish_reason == "stop", r
    assert "18 degrees and sunny" in r.choices[0].message.content, r
    forced = client.chat.completions.create(
        model="gpt-sim",
        messages=[{"role": "user", "content": "Hello"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert forced.choices[0].message.tool_calls[0].function.name == "get_weather", forced


@check("streaming")
def _():
    messages = [{"role": "user", "content": "Tell me about lighthouses"}]
    whole = client.chat.completions.create(model="gpt-sim", messages=messages)
    text, usage, finish, chunks = "", None, None, 0
    stream = client.chat.completions.create(
        model="gpt-sim", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == whole.choices[0].message.content, (text, whole)
    assert chunks > 5, chunks
    assert finish == "stop", finish
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage


@check("streamed tool calls")
def _():
    stream = client.chat.completions.create(
        model="gpt-sim",
        messages=[{"role": "user", "content": "What is the weather in Rome, in fahrenheit?"}],
        tools=[WEATHER],
        stream=True,
    )
    calls = {}
    for chunk in stream:
        for choice in chunk.choices:
            for d in choice.delta.tool_calls or []:
                c = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                c["id"] = d.id or c["id"]
                if d.function:
                    c["name"] += d.function.name or ""
                    c["arguments"] += d.function.arguments or ""
    assert calls[0]["name"] == "get_weather" and calls[0]["id"], calls
    assert json.loads(calls[0]["arguments"]) == {"city": "Rome", "unit": "fahrenheit"}, calls


class Capital(pydantic.BaseModel):
    country: str
    capital: str
    population_millions: float


@check("structured outputs (parse)")
def _():
    r = client.chat.completions.parse(
        model="gpt-sim", messages=[{"role": "user", "content": FEW_SHOT}], response_format=Capital
    )
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Capital) and parsed.capital == "Paris", r


@check("json schema answers")
def _():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "kind": {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["a", "b"]}]},
            "nested": {"$ref": "#/$defs/Inner"},
        },
        "required": ["name", "tags", "score", "kind", "nested"],
        "additionalProperties": False,
        "$defs": {"Inner": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}},
    }
    r = client.chat.completions.create(
        model="gpt-sim",
        messages=[{"role": "user", "content": "Rate the Eiffel Tower from 1 to 5."}],
        response_format={"type": "json_schema", "json_schema": {"name": "rating", "schema": schema, "strict": True}},
    )
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


@check("embeddings")
def _():
    texts = ["What is the capital of France?", "capital of France", "How many legs has a spider?"]
    # The package asks for base64 by default and decodes it.
    got = client.embeddings.create(model="embed-sim", input=texts)
    floats = client.embeddings.create(model="embed-sim", input=texts, encoding_format="float")
    vectors = [d.embedding for d in got.data]
    assert [d.index for d in got.data] == [0, 1, 2], got
    assert all(len(v) == 256 for v in vectors), [len(v) for v in vectors]
    assert all(abs(a - b) < 1e-6 for v, w in zip(vectors, [d.embedding for d in floats.data]) for a, b in zip(v, w))
    cos = lambda a, b: sum(x * y for x, y in zip(a, b))
    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]), vectors
    assert got.usage.prompt_tokens > 0, got.usage
    short = client.embeddings.create(model="embed-sim", input="one text", dimensions=32)
    assert len(short.data[0].embedding) == 32, short


@check("errors")
def _():
    try:
        client.chat.completions.create(model="gpt-sim", messages=[{"role": "wizard", "content": "hi"}])
        raise AssertionError("a bad role was accepted")
    except openai.BadRequestError as e:
        assert "wizard" in str(e), e
    limited = openai.OpenAI(base_url=os.environ["LIMITED_BASE_URL"], api_key="sk-test", max_retries=0)
    limited.chat.completions.create(model="gpt-sim", messages=[{"role": "user", "content": "one"}])
    try:
        limited.chat.completions.create(model="gpt-sim", messages=[{"role": "user", "content": "two"}])
        raise AssertionError("a second request within the minute was served at 1 rpm")
    except openai.RateLimitError as e:
        headers = e.response.headers
        assert headers["x-ratelimit-limit-requests"] == "1", dict(headers)
        assert float(headers["retry-after"]) > 0, dict(headers)
        assert "try again in" in str(e), e


claude = anthropic.Anthropic(base_url=BASE.removesuffix("/v1"), api_key="sk-test", max_retries=0)
ANTHROPIC_WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": WEATHER["function"]["parameters"],
}


@check("anthropic messages and tools")
def _():
    r = claude.messages.create(
        model="claude-sim", max_tokens=200, system="Be brief.", messages=[{"role": "user", "content": FEW_SHOT}]
    )
    assert r.content[0].type == "text" and r.content[0].text == "Capital: Paris", r
    assert r.stop_reason == "end_turn" and r.usage.input_tokens > 0, r
    messages = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
    r = claude.messages.create(model="claude-sim", max_tokens=200, messages=messages, tools=[ANTHROPIC_WEATHER])
    assert r.stop_reason == "tool_use", r
    use = next(b for b in r.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris", "unit": "celsius"}, use
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]})
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 degrees"}]}
    )
    r = claude.messages.create(model="claude-sim", max_tokens=200, messages=messages, tools=[ANTHROPIC_WEATHER])
    assert "18 degrees" in r.content[0].text, r


@check("anthropic streaming")
def _():
    messages = [{"role": "user", "content": "What is the weather in Rome, in fahrenheit?"}]
    with claude.messages.stream(
        model="claude-sim", max_tokens=200, messages=messages, tools=[ANTHROPIC_WEATHER]
    ) as stream:
        final = stream.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.input == {"city": "Rome", "unit": "fahrenheit"}, final
    with claude.messages.stream(
        model="claude-sim", max_tokens=200, messages=[{"role": "user", "content": "Tell me about lighthouses"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and text == final.content[0].text, (text, final)
    assert final.usage.output_tokens > 0, final.usage
