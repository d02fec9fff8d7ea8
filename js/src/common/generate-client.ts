// Typed client of sdpanel's generation REST + SSE API (sdpanel/generate/openapi.json), routes
// under <base_url>sdpanel/api/. It takes a `request(path, init)` function so each front end
// brings its own transport: the JupyterLab sidebar passes ServerConnection.makeRequest (token +
// XSRF), a page inside JupyterLab can use pageRequest() (PageConfig base URL + _xsrf cookie).
// Events are read with fetch + a stream reader, not EventSource: EventSource cannot send the
// Authorization / Last-Event-ID headers we need, and resuming after a drop is ours to do.

export type Mode = "txt2img" | "img2img" | "inpaint";
export type JobState = "queued" | "running" | "succeeded" | "failed" | "cancelled";

export interface LoRA {
  name: string;
  weight?: number;
}

/** POST /jobs body (components.schemas.JobRequest). Images: base64 or data: URLs. */
export interface JobRequest {
  mode?: Mode;
  prompt: string;
  negative_prompt?: string;
  checkpoint: string;
  vae?: string;
  loras?: LoRA[];
  sampler?: string;
  scheduler?: string;
  steps?: number;
  cfg?: number;
  seed?: number;
  width?: number;
  height?: number;
  batch_size?: number;
  batch_count?: number;
  denoise?: number;
  init_image?: string;
  mask?: string;
  mask_blur?: number;
  inpaint_area?: "whole" | "only_masked";
  only_masked_padding?: number;
  priority?: number;
}

export interface JobImage {
  n: number;
  seed: number;
  path?: string;
  url?: string;
  /** false once the PNG was deleted from the outputs folder: do not request it. */
  available?: boolean;
}

/** components.schemas.Job */
export interface Job {
  id: string;
  state: JobState;
  mode: Mode;
  priority?: number;
  created?: number;
  started?: number | null;
  finished?: number | null;
  backend?: string | null;
  seed: number;
  progress: { step: number; steps: number; fraction: number };
  images: JobImage[];
  error: string;
  cancel_requested?: boolean;
  events_url?: string;
  params: Record<string, unknown>;
}

export interface NamedChoice {
  name: string;
  label: string;
}

export interface BackendStatus {
  name: string;
  flavour: string;
  url: string;
  job: string | null;
  down: boolean;
  done: number;
}

/** GET /generate/options */
export interface GenerateOptions {
  modes: Mode[];
  samplers: NamedChoice[];
  schedulers: NamedChoice[];
  limits: {
    size: [number, number];
    steps: [number, number];
    cfg: [number, number];
    seed: [number, number];
    batch_size: [number, number];
    batch_count: [number, number];
    image_pixels: number;
    image_bytes: number;
  };
  models?: { checkpoints: string[]; loras: string[]; vae: string[] };
  backends?: BackendStatus[];
  /** Whether sdpanel's own engine can run here (no WebUI needed), else how to install it. */
  builtin?: { available: boolean; message: string };
}

/** The note on where jobs run when no WebUI is up ("" while one is): the built-in engine,
 * or what to do when it is not installed. `launch` says how to start a WebUI here. */
export function backendNotice(o: GenerateOptions, launch: string): string {
  if ((o.backends ?? []).some((b) => b.flavour !== "builtin")) return "";
  if (o.builtin?.available ?? true) {
    return "No WebUI is running: jobs run on the built-in engine (its own process; the first job loads the model).";
  }
  return `No WebUI is running: ${launch}, or ${o.builtin?.message ?? "install sdpanel[engine]"}`;
}

/** SSE events of GET /jobs/{id}/events, by `event:` name. */
export interface JobEventData {
  queued: { state: "queued"; position: number; seed: number };
  running: { state: "running"; backend: string; seed: number };
  progress: { step: number; steps: number; fraction: number };
  preview: { image: string; step: number };
  done: { state: "succeeded"; seed: number; images: { n: number; seed: number; filename: string; url: string }[] };
  error: { state: "failed" | "cancelled"; message: string };
}
export type JobEventKind = keyof JobEventData;
export type JobEvent = { [K in JobEventKind]: { id: number; kind: K; data: JobEventData[K] } }[JobEventKind];

/** A transport: resolves a path relative to <base_url>sdpanel/api/ and fetches it. */
export type RequestFn = (path: string, init?: RequestInit) => Promise<Response>;

/** A non-2xx answer. `errors` maps each bad field to its message (400 of POST /jobs). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly errors: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export const API_PREFIX = "sdpanel/api/";

async function json<T>(resp: Promise<Response>): Promise<T> {
  const r = await resp;
  const text = await r.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!r.ok) {
    const b = (body ?? {}) as { message?: string; errors?: Record<string, string> };
    const why = b.message || text.slice(0, 200) || r.statusText;
    throw new ApiError(`${r.status} ${why}`.trim(), r.status, b.errors ?? {});
  }
  return body as T;
}

const post = (body: unknown): RequestInit => ({
  method: "POST",
  body: JSON.stringify(body),
  headers: { "Content-Type": "application/json" },
});

export function createJob(request: RequestFn, job: JobRequest): Promise<Job> {
  return json<Job>(request("jobs", post(job)));
}

export async function listJobs(request: RequestFn, state?: JobState): Promise<Job[]> {
  const q = state ? `?state=${encodeURIComponent(state)}` : "";
  return (await json<{ jobs: Job[] }>(request(`jobs${q}`))).jobs;
}

export function getJob(request: RequestFn, id: string): Promise<Job> {
  return json<Job>(request(`jobs/${encodeURIComponent(id)}`));
}

export function cancelJob(request: RequestFn, id: string): Promise<Job> {
  return json<Job>(request(`jobs/${encodeURIComponent(id)}`, { method: "DELETE" }));
}

export function getOptions(request: RequestFn): Promise<GenerateOptions> {
  return json<GenerateOptions>(request("generate/options"));
}

/** Path (for `request`) of a job's n-th output PNG. */
export function imageUrl(id: string, n: number): string {
  return `jobs/${encodeURIComponent(id)}/images/${n}`;
}

/** The n-th output as a Blob (fetched with the transport's auth, unlike a bare <img src>). */
export async function fetchImage(request: RequestFn, id: string, n: number): Promise<Blob> {
  const r = await request(imageUrl(id, n));
  if (!r.ok) throw new ApiError(`${r.status} image ${n} of job ${id}: ${(await r.text()).slice(0, 200)}`, r.status);
  return r.blob();
}

/** Parses an SSE byte stream into events (`id`, `event`, `data` lines; comments ignored). */
export class SSEParser {
  private buf = "";
  private id = "";
  private kind = "";
  private data: string[] = [];
  lastId = "";
  retry = 0;

  constructor(private onEvent: (id: string, kind: string, data: string) => void) {}

  push(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buf.slice(0, nl);
      const sep = this.buf.startsWith("\r\n", nl) ? 2 : 1;
      this.buf = this.buf.slice(nl + sep);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === "") {
      if (this.data.length) {
        this.lastId = this.id || this.lastId;
        this.onEvent(this.lastId, this.kind || "message", this.data.join("\n"));
      }
      this.kind = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return; // keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") this.id = value;
    else if (field === "event") this.kind = value;
    else if (field === "data") this.data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

export interface StreamOptions {
  /** Resume after this event id (events up to it are not repeated). */
  lastEventId?: number;
  signal?: AbortSignal;
  /** Reconnect attempts after a dropped stream before giving up (default 20). */
  maxRetries?: number;
}

const FINAL: ReadonlySet<string> = new Set(["done", "error"]);
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });

/**
 * Follows a job's events until `done` or `error` (resolves with that last event). A dropped
 * connection is resumed with Last-Event-ID, so each event is delivered once. Rejects when
 * aborted, on a 4xx answer, or after `maxRetries` failed reconnects.
 */
export async function streamEvents(
  request: RequestFn,
  jobId: string,
  onEvent: (event: JobEvent) => void,
  { lastEventId = 0, signal, maxRetries = 20 }: StreamOptions = {},
): Promise<JobEvent> {
  let last = lastEventId;
  let retryMs = 2000;
  let failures = 0;
  for (;;) {
    if (signal?.aborted) throw new DOMException("aborted", "AbortError");
    const got: { final: JobEvent | null } = { final: null };
    try {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (last > 0) headers["Last-Event-ID"] = String(last);
      const resp = await request(`jobs/${encodeURIComponent(jobId)}/events`, { headers, signal, cache: "no-store" });
      if (!resp.ok) {
        const err = new ApiError(`${resp.status} ${(await resp.text()).slice(0, 200)}`, resp.status);
        if (resp.status < 500) throw err; // 404 unknown job, 403: retrying will not help
        throw Object.assign(err, { retry: true });
      }
      if (!resp.body) throw new ApiError("the events response has no body (streaming unsupported)", 0);
      const parser = new SSEParser((id, kind, data) => {
        const n = Number(id);
        if (Number.isFinite(n) && n > 0) {
          if (n <= last) return; // already delivered before a reconnect
          last = n;
        }
        let parsed: unknown = {};
        try { parsed = JSON.parse(data); } catch { parsed = { raw: data }; }
        const event = { id: n, kind, data: parsed } as JobEvent;
        failures = 0;
        onEvent(event);
        if (FINAL.has(kind)) got.final = event;
      });
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.push(decoder.decode(value, { stream: true }));
        if (got.final) {
          void reader.cancel().catch(() => undefined);
          break;
        }
      }
      if (parser.retry) retryMs = parser.retry;
      if (got.final) return got.final;
    } catch (err) {
      if (signal?.aborted) throw err;
      const e = err as ApiError & { retry?: boolean };
      if (e instanceof ApiError && !e.retry) throw e;
    }
    // The stream ended without a final event (a proxy or the network dropped it): resume.
    if (++failures > maxRetries) throw new ApiError(`lost the event stream of job ${jobId} (${maxRetries} retries)`, 0);
    await sleep(Math.min(retryMs * failures, 10_000), signal);
  }
}

/** A transport for a page inside JupyterLab / Notebook 7 without ServerConnection: the
 *  base URL from the page's PageConfig and the _xsrf cookie (the login cookie authenticates). */
export function pageRequest(doc: Document = document): RequestFn | null {
  const el = doc.getElementById("jupyter-config-data");
  if (!el?.textContent) return null;
  let base = "/";
  try {
    base = (JSON.parse(el.textContent) as { baseUrl?: string }).baseUrl || "/";
  } catch {
    return null;
  }
  const root = base.replace(/\/?$/, "/") + API_PREFIX;
  return (path, init = {}) => {
    const xsrf = /(?:^|;\s*)_xsrf=([^;]*)/.exec(doc.cookie)?.[1];
    const headers = new Headers(init.headers);
    if (xsrf) headers.set("X-XSRFToken", decodeURIComponent(xsrf));
    return fetch(root + path, { credentials: "same-origin", ...init, headers });
  };
}
