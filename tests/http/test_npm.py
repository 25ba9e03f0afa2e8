#!/usr/bin/env python3
"""The official `openai` and `ollama` npm packages, unchanged, against
lmpool-http and a real lmpoold: list models, whole and streamed chats and
completions, usage, errors as the SDKs' own exception classes, an aborted
stream. Greedy answers are compared with the daemon's own over ZeroMQ.
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

out.models = (await openai.models.list()).data.map((m) => m.id).filter((m) => m !== 'deep');
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
out.ollama_list = (await ollama.list()).models.map((m) => m.name).filter((m) => m !== 'deep');
out.ollama_ps = (await ollama.ps()).models.map((m) => m.name).filter((m) => m !== 'deep');
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
console.log(JSON.stringify(out));
"""


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
        d = Daemon(deep=True)  # the aborted stream runs on the slower model: surely still running
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
