"""The TypeScript generation client (js/src/common/generate-client.ts), bundled with the
project's esbuild and run in Node: the SSE parser copes with split chunks, CRLF and
keep-alive comments; ``streamEvents`` resumes a dropped stream with ``Last-Event-ID``,
retries a 5xx, never delivers an event twice and stops at ``done``; a 404 is not retried;
a 400 from ``createJob`` carries the per-field errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ESBUILD = REPO / "node_modules" / ".bin" / "esbuild"
CLIENT = REPO / "js" / "src" / "common" / "generate-client.ts"

HARNESS = r"""
import { ApiError, createJob, streamEvents } from "__CLIENT__";

const enc = new TextEncoder();
const sse = (chunks: string[]) => new Response(new ReadableStream({
  start(c) { for (const ch of chunks) c.enqueue(enc.encode(ch)); c.close(); },
}), { status: 200, headers: { "Content-Type": "text/event-stream" } });

const calls: { path: string; last: string | null; method: string }[] = [];
let n = 0;
const request = async (path: string, init: RequestInit = {}) => {
  calls.push({ path, last: new Headers(init.headers).get("Last-Event-ID"), method: init.method ?? "GET" });
  if (path === "jobs") {
    return new Response(JSON.stringify({ message: "invalid", errors: { width: "250 is not a multiple of 8" } }), { status: 400 });
  }
  if (path.startsWith("jobs/gone")) return new Response(JSON.stringify({ message: "no job" }), { status: 404 });
  n++;
  if (n === 1) {  // two events (the second split across chunks), then the connection drops
    return sse(["retry: 1\n\n", 'id: 1\nevent: queued\ndata: {"state":"queued","position":1,"seed":5}\n\n',
      "id: 2\nevent: progr", 'ess\ndata: {"step":1,"steps":2,"fraction":0.5}\n\n']);
  }
  if (n === 2) return new Response("bad gateway", { status: 502 });  // a proxy hiccup
  return sse([": keep-alive\n\n", 'id: 2\nevent: progress\ndata: {"step":1,"steps":2,"fraction":0.5}\n\n',
    'id: 3\r\nevent: preview\r\ndata: {"image":"data:image/png;base64,AA==","step":1}\r\n\r\n',
    'id: 4\nevent: done\ndata: {"state":"succeeded","seed":5,"images":[{"n":0,"seed":5,"filename":"a.png","url":"/x"}]}\n\n',
    'id: 5\nevent: progress\ndata: {}\n\n']);
};

const got: [number, string][] = [];
const final = await streamEvents(request, "job-1", (e) => got.push([e.id, e.kind]));
let notFound = "";
try { await streamEvents(request, "gone", () => undefined); } catch (e) { notFound = `${(e as ApiError).status}`; }
let fields: Record<string, string> = {};
let status = 0;
try { await createJob(request, { prompt: "p", checkpoint: "m", width: 250 }); } catch (e) {
  fields = (e as ApiError).errors; status = (e as ApiError).status;
}
console.log(JSON.stringify({ got, final: [final.id, final.kind, (final.data as { seed: number }).seed], calls, notFound, fields, status }));
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if not ESBUILD.exists() or shutil.which("node") is None:
        pytest.skip("node and the project's esbuild (npm ci) are needed")
    tmp = tmp_path_factory.mktemp("tsclient")
    (tmp / "harness.ts").write_text(HARNESS.replace("__CLIENT__", str(CLIENT)))
    subprocess.run([str(ESBUILD), str(tmp / "harness.ts"), "--bundle", "--platform=node", "--format=esm",
                    f"--outfile={tmp / 'harness.mjs'}", "--log-level=warning"], check=True, cwd=REPO)
    out = subprocess.run(["node", str(tmp / "harness.mjs")], check=True, capture_output=True, text=True, timeout=60)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_stream_resumes_with_last_event_id_and_delivers_each_event_once(result: dict[str, object]) -> None:
    assert result["got"] == [[1, "queued"], [2, "progress"], [3, "preview"], [4, "done"]]
    assert result["final"] == [4, "done", 5]
    calls = [c for c in result["calls"] if c["path"] == "jobs/job-1/events"]  # type: ignore[union-attr]
    # First connect without the header; after the drop and after the 502, resume from event 2.
    assert [c["last"] for c in calls] == [None, "2", "2"]


def test_unknown_job_is_not_retried_and_400_carries_field_errors(result: dict[str, object]) -> None:
    assert result["notFound"] == "404"
    gone = [c for c in result["calls"] if c["path"].startswith("jobs/gone")]  # type: ignore[union-attr]
    assert len(gone) == 1
    assert result["status"] == 400 and result["fields"] == {"width": "250 is not a multiple of 8"}
    post = next(c for c in result["calls"] if c["path"] == "jobs")  # type: ignore[union-attr]
    assert post["method"] == "POST"
