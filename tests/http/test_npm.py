#!/usr/bin/env python3
"""The official `openai` and `ollama` npm packages, unchanged, against
lmpool-http and a real lmpoold: list models, whole and streamed chats and
completions, usage, errors as the SDKs' own exception classes, an aborted
stream, and tools: a required call (whole and streamed) whose arguments
parse and validate, sent back with the tool's result and answered, on a
fixture model given Qwen 2.5's chat template. Greedy answers are compared
with the daemon's own over ZeroMQ.
The packages are installed with npm into this test's temporary directory
(never into the tree); when npm or its registry cannot be reached the
test is skipped (exit 77) and says why."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import KEY, Daemon, Gateway, metrics  # noqa: E402

SCRIPT = r"""
import OpenAI from 'openai';
import { Ollama } from 'ollama';

const port = process.argv[2], key = process.argv[3];
const out = {};
const openai = new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
const msgs = [{ role: 'user', content: 'Say hello' }];

const other = (m) => m !== 'deep' && m !== 'toolm';
out.models = (await openai.models.list()).data.map((m) => m.id).filter(other);
const whole = await openai.chat.completions.create({ model: 'tiny', messages: msgs, max_tokens: 8, temperature: 0 });
out.chat = { content: whole.choices[0].message.content, finish: whole.choices[0].finish_reason, usage: whole.usage };

const stream = await openai.chat.completions.create({ model: 'tiny', messages: msgs, max_tokens: 8, temperature: 0,
                                                      stream: true, stream_options: { include_usage: true } });
let text = '', usage = null;
for await (const chunk of stream) {
  if (chunk.choices.length) text += chunk.choices[0].delta.content ?? '';
  if (chunk.usage) usage = chunk.usage;
}
out.chat_stream = { content: text, usage };

const comp = await openai.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 6, temperature: 0 });
out.completion = { text: comp.choices[0].text, usage: comp.usage };

try {
  await openai.chat.completions.create({ model: 'nope', messages: msgs });
  out.not_found = 'no error';
} catch (e) {
  out.not_found = { cls: e instanceof OpenAI.NotFoundError, status: e.status, code: e.code };
}
try {
  await new OpenAI({ apiKey: 'sk-wrong-key-0000000000000', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 })
    .models.list();
  out.bad_key = 'no error';
} catch (e) {
  out.bad_key = { cls: e instanceof OpenAI.AuthenticationError, status: e.status };
}
try {
  await openai.chat.completions.create({ model: 'tiny', messages: msgs, n: 3 });
  out.bad_request = 'no error';
} catch (e) {
  out.bad_request = { cls: e instanceof OpenAI.BadRequestError, status: e.status, param: e.param };
}
// an aborted stream: the SDK closes the connection, the gateway cancels
const ctl = new AbortController();
const long = await openai.completions.create({ model: 'deep', prompt: 'Once', max_tokens: 2000, stream: true,
                                              ignore_eos: true }, { signal: ctl.signal });
let n = 0;
try {
  for await (const chunk of long) {
    if (++n === 2) ctl.abort();
  }
  out.aborted = { name: 'ended', chunks: n };  // the SDK may end the loop quietly
} catch (e) {
  out.aborted = { name: e.constructor.name, chunks: n };
}

const ollama = new Ollama({ host: `http://127.0.0.1:${port}`, headers: { Authorization: `Bearer ${key}` } });
out.ollama_list = (await ollama.list()).models.map((m) => m.name).filter(other);
out.ollama_ps = (await ollama.ps()).models.map((m) => m.name).filter(other);
out.ollama_show = (await ollama.show({ model: 'tiny' })).details.family;
const oc = await ollama.chat({ model: 'tiny', messages: msgs, options: { num_predict: 8, temperature: 0 } });
out.ollama_chat = { content: oc.message.content, done: oc.done, eval_count: oc.eval_count,
                    prompt_eval_count: oc.prompt_eval_count };
let ot = '', last = null;
for await (const part of await ollama.chat({ model: 'tiny', messages: msgs, stream: true,
                                             options: { num_predict: 8, temperature: 0 } })) {
  ot += part.message.content;
  last = part;
}
out.ollama_chat_stream = { content: ot, done: last.done, done_reason: last.done_reason };
const og = await ollama.generate({ model: 'tiny', prompt: 'Once upon a time', raw: true,
                                   options: { num_predict: 6, temperature: 0 } });
out.ollama_generate = { response: og.response, done: og.done };
try {
  await ollama.chat({ model: 'nope', messages: msgs });
  out.ollama_not_found = 'no error';
} catch (e) {
  out.ollama_not_found = { name: e.name, status: e.status_code, error: e.error };
}

// tools: a required call, its arguments parsed, the result sent back
const tools = [{ type: 'function', function: { name: 'get_weather', description: 'The weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string', minLength: 1, maxLength: 8 },
                                              unit: { enum: ['celsius', 'fahrenheit'] } },
                required: ['city', 'unit'], additionalProperties: false } } },
               { type: 'function', function: { name: 'now', description: 'The time' } }];
const ask = [{ role: 'user', content: 'What is the weather in Paris?' }];
const tc = await openai.chat.completions.create({ model: 'toolm', messages: ask, tools, tool_choice: 'required',
                                                  max_tokens: 300, temperature: 0 });
const msg = tc.choices[0].message, call = msg.tool_calls[0];
out.tool_call = { finish: tc.choices[0].finish_reason, n: msg.tool_calls.length, id: call.id, type: call.type,
                  name: call.function.name, args: JSON.parse(call.function.arguments), content: msg.content };
let sid = '', sname = '', sargs = '', sfinish = null, stext = '';
for await (const chunk of await openai.chat.completions.create({ model: 'toolm', messages: ask, tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 300, temperature: 0,
    stream: true })) {
  const ch = chunk.choices[0];
  if (!ch) continue;
  for (const t of ch.delta.tool_calls ?? []) {
    if (t.id) sid = t.id;
    sname += t.function?.name ?? '';
    sargs += t.function?.arguments ?? '';
  }
  stext += ch.delta.content ?? '';
  if (ch.finish_reason) sfinish = ch.finish_reason;
}
out.tool_stream = { id: sid, name: sname, args: JSON.parse(sargs), finish: sfinish, text: stext };
const back = await openai.chat.completions.create({ model: 'toolm', tools, max_tokens: 6, temperature: 0,
  messages: [...ask, msg, { role: 'tool', tool_call_id: call.id, content: '21 degrees and sunny' }] });
out.tool_answer = { finish: back.choices[0].finish_reason, content: back.choices[0].message.content,
                    prompt_tokens: back.usage.prompt_tokens, first_prompt_tokens: tc.usage.prompt_tokens };
// Ollama: tools (tool_choice is lmpool's extension there), arguments as an object, the result sent back
const oc2 = await ollama.chat({ model: 'toolm', messages: ask, tools, tool_choice: 'required', stream: false,
                                options: { num_predict: 300, temperature: 0 } });
out.ollama_tool = { calls: oc2.message.tool_calls, done_reason: oc2.done_reason };
const ob = await ollama.chat({ model: 'toolm', tools, stream: false, options: { num_predict: 6, temperature: 0 },
  messages: [...ask, oc2.message, { role: 'tool', content: '21 degrees', tool_name: 'get_weather' }] });
out.ollama_tool_answer = { done: ob.done, prompt_eval_count: ob.prompt_eval_count };
console.log(JSON.stringify(out));
"""


WEATHER = {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 8},
                                          "unit": {"enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"], "additionalProperties": False}


def weather_ok(args):
    return (isinstance(args, dict) and set(args) == {"city", "unit"} and isinstance(args["city"], str) and
            1 <= len(args["city"]) <= 8 and args["unit"] in ("celsius", "fahrenheit"))


def skip(why):
    print(f"skipped: {why}")
    raise SystemExit(77)


def direct(d, req):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.endpoint)
    s.send_json({"v": 1, "id": "d", "model": "tiny", "stream": False, **req})
    if not s.poll(30000):
        raise TimeoutError(req)
    ev = s.recv_json()
    s.close()
    assert ev["event"] == "done", ev
    return ev


def main():
    harness.skip_unless_ready()
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        skip("node or npm is not installed")
    tmp = tempfile.mkdtemp(prefix="lmpool-npm-")
    try:
        try:
            r = subprocess.run([npm, "install", "--prefix", tmp, "--no-audit", "--no-fund", "--loglevel=error",
                                "openai", "ollama"], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            skip("npm install did not finish in 300 s (registry unreachable?)")
        if r.returncode != 0:
            skip("npm install openai ollama failed (registry unreachable?): " + r.stderr.strip()[-500:])
        with open(os.path.join(tmp, "clients.mjs"), "w") as f:
            f.write(SCRIPT)
        for p in ("openai", "ollama"):
            with open(os.path.join(tmp, "node_modules", p, "package.json")) as f:
                print(f"{p} {json.load(f)['version']}")
        # tools need the model's own template: the fixture model with Qwen 2.5's
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
        from test_daemon import with_chat_template
        toolm = os.path.join(tmp, "toolm.gguf")
        with open(os.path.join(harness.FIXTURES, "templates-real", "Qwen-Qwen2.5-7B-Instruct.jinja")) as f:
            with_chat_template(harness.MODEL, toolm, f.read())
        # the aborted stream runs on the slower model: surely still running
        d = Daemon(deep=True, model_extra=f"  - name: toolm\n    path: {toolm}\n    ctx: 2048\n")
        gw = None
        try:
            gw = Gateway(d)
            gw.wait_healthy()
            r = subprocess.run([node, os.path.join(tmp, "clients.mjs"), str(gw.port), KEY], capture_output=True,
                               text=True, timeout=300, cwd=tmp)
            if r.returncode != 0:
                print(r.stdout, r.stderr, gw.logs())
                return 1
            out = json.loads(r.stdout.strip().splitlines()[-1])
            print(json.dumps(out, indent=1))
            msgs = [{"role": "user", "content": "Say hello"}]
            chat = direct(d, {"type": "chat", "messages": msgs, "max_tokens": 8, "temperature": 0})
            gen = direct(d, {"type": "generate", "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0})
            checks = [
                (out["models"] == ["tiny"], "openai models.list"),
                (out["chat"]["content"] == chat["text"], "openai chat content"),
                (out["chat"]["usage"]["prompt_tokens"] == chat["usage"]["prompt_tokens"], "openai chat usage"),
                (out["chat"]["usage"]["completion_tokens"] == chat["usage"]["generated_tokens"], "openai usage"),
                (out["chat_stream"]["content"] == chat["text"], "openai chat stream content"),
                (out["chat_stream"]["usage"] and out["chat_stream"]["usage"]["completion_tokens"] ==
                 chat["usage"]["generated_tokens"], "openai stream usage"),
                (out["completion"]["text"] == gen["text"], "openai completion"),
                (out["not_found"] == {"cls": True, "status": 404, "code": "model_not_found"}, "openai NotFoundError"),
                (out["bad_key"] == {"cls": True, "status": 401}, "openai AuthenticationError"),
                (out["bad_request"]["cls"] and out["bad_request"]["status"] == 400 and
                 out["bad_request"]["param"] == "n", "openai BadRequestError"),
                (out["aborted"]["chunks"] < 2000, "openai stream aborted before its end"),
                (out["ollama_list"] == ["tiny"] and out["ollama_ps"] == ["tiny"], "ollama list/ps"),
                (out["ollama_show"] == "llama", "ollama show"),
                (out["ollama_chat"]["content"] == chat["text"] and out["ollama_chat"]["done"], "ollama chat"),
                (out["ollama_chat"]["prompt_eval_count"] == chat["usage"]["prompt_tokens"], "ollama counts"),
                (out["ollama_chat_stream"]["content"] == chat["text"] and out["ollama_chat_stream"]["done"],
                 "ollama chat stream"),
                (out["ollama_generate"]["response"] == gen["text"], "ollama generate"),
                (isinstance(out["ollama_not_found"], dict) and out["ollama_not_found"]["status"] == 404,
                 "ollama ResponseError 404"),
                (out["tool_call"]["finish"] == "tool_calls" and out["tool_call"]["n"] == 1 and
                 out["tool_call"]["type"] == "function" and out["tool_call"]["content"] is None and
                 len(out["tool_call"]["id"]) == 9, "openai tool call"),
                (out["tool_call"]["name"] == "now" and out["tool_call"]["args"] == {} or
                 out["tool_call"]["name"] == "get_weather" and weather_ok(out["tool_call"]["args"]),
                 "openai tool call arguments validate"),
                (out["tool_stream"]["finish"] == "tool_calls" and out["tool_stream"]["name"] == "get_weather" and
                 weather_ok(out["tool_stream"]["args"]) and out["tool_stream"]["text"] == "" and
                 len(out["tool_stream"]["id"]) == 9, "openai streamed tool call"),
                (out["tool_answer"]["finish"] in ("stop", "length") and
                 isinstance(out["tool_answer"]["content"], str) and
                 out["tool_answer"]["prompt_tokens"] > out["tool_answer"]["first_prompt_tokens"],
                 "openai tool result answered"),
                (len(out["ollama_tool"]["calls"]) == 1 and
                 out["ollama_tool"]["calls"][0]["function"]["name"] in ("get_weather", "now") and
                 isinstance(out["ollama_tool"]["calls"][0]["function"]["arguments"], dict) and
                 out["ollama_tool"]["done_reason"] == "stop", "ollama tool call"),
                (out["ollama_tool_answer"]["done"], "ollama tool result answered"),
            ]
            # the aborted stream was cancelled in the pool
            deadline = time.time() + 30
            gone = 0
            while time.time() < deadline:
                m = metrics(gw.request("GET", "/metrics")[2].decode())
                gone = m[("lmpool_http_client_gone_total", frozenset())]
                if gone >= 1 and m[("lmpool_http_requests_in_flight", frozenset())] == 0:
                    break
                time.sleep(0.05)
            checks.append((gone >= 1, "the aborted stream counted as client gone"))
            failed = [name for ok, name in checks if not ok]
            for name in failed:
                print(f"FAIL: {name}")
            if not gw.alive():
                print("FAIL: lmpool-http died")
                return 1
            return 1 if failed else 0
        finally:
            if gw:
                gw.stop()
            d.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
