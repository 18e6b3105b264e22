"""A class on one server: N real headless-Chromium browser contexts against one `streamlit run`.

    python bench/classroom.py --students 12 [--epochs 2] [--timeout 900]

Each student is its own browser context (own cookies, own Streamlit session) on its own page.
Student 0 opens a lesson (the Lessons page, ?lesson=seesaw); the others open the Train page,
half on the lesson's default setup (the same seed: these should share one run) and half on their
own seed, and all press Train within about a second. The benchmark then watches every page until
each student has a result (the test-metrics table) or a stated refusal, reading only what the
page shows.

What a page shows right after the press is its answer: training (preparing / an epoch bar / "your
turn"), queued at place N, attached to a shared run, an identical run opened, or refused with the
reason. A press with no answer by the end is `lost`; an exception box or a traceback is an `error`.

The teacher's browser opens the app once before the class arrives (the first visit of a fresh
server imports torch and builds the world). The server runs with the app's defaults (MTR_MAX_JOBS, MTR_MAX_QUEUE, MTR_MIN_FREE_MB unset) and
a fresh run store; `--epochs` shortens every training (the default setup trains 8) so a class fits
on a small machine: say which you used. The last line is one JSON object:
{"students", "finished", "shared", "refused", "lost", "errors", "p50_result_s", "p95_result_s",
 "p95_first_render_s", "server_peak_rss_mb"}.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
        # each student's page is in the foreground of its own screen; Chromium would otherwise
        # throttle the timers of the 30 windows it treats as background (Streamlit's run_every
        # redraw and this watcher are timers)
        "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
ANSWERS = {  # what the Train page says, in the order a page is checked
    "refused": ("The server is busy", "short of memory"),
    "shared": ("The same setup is training for", "trained by someone else on this server",
               "A lesson or sweep on this server is training", "A lesson on this server trained"),
    "queued": ("Queued: place",),
    "running": ("Your turn", "Preparing data", "Training on", "epoch ", "Finished"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def hwm_mb(pid: int) -> float | None:
    """The process's peak resident memory (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))], 2)


def start_server(store: Path, cache: Path) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTR_")}
    env.update(MTR_RUN_STORE=str(store), MTR_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
    log = store.parent / "streamlit.log"
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"streamlit did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)
    return proc, url, log


# Each page times itself with the browser's clock (epoch ms, the same clock as this process), so a
# slow polling loop on a loaded machine does not inflate what a student saw.
WATCH = """
(() => {
  const answers = %s;
  const m = window.__mtr = {origin: performance.timeOrigin};
  document.addEventListener('click', e => {
    if (e.target.closest && e.target.closest('.st-key-t_train') && !m.pressed) m.pressed = Date.now();
  }, true);
  setInterval(() => {
    const app = document.querySelector("[data-testid='stApp']");
    const idle = app && app.getAttribute('data-test-script-state') === 'notRunning';
    if (!m.rendered && idle && document.querySelector('.st-key-t_train button, .st-key-l_run button'))
      m.rendered = Date.now();
    if (!m.pressed) return;
    const main = document.querySelector("[data-testid='stMain']");
    const text = main ? main.innerText : '';
    if (!m.answer) {
      for (const [kind, needles] of answers) {
        if (needles.some(n => text.includes(n))) { m.answer = kind; m.answered = Date.now(); break; }
      }
    }
    if (!m.result && document.querySelector('.st-key-t_metrics')) m.result = Date.now();
  }, 100);
})();
""" % json.dumps([[k, list(v)] for k, v in ANSWERS.items()])


class Student:
    def __init__(self, k: int, ctx, path: str, role: str):
        self.k, self.ctx, self.path, self.role = k, ctx, path, role
        ctx.add_init_script(WATCH)
        self.page = ctx.new_page()
        self.page_errors: list[str] = []
        self.page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        self.m: dict = {}  # what the page recorded (window.__mtr), times in epoch ms
        self.outcome = ""  # finished | refused | error | "" (still waiting)

    def read(self) -> dict:
        try:
            self.m = self.page.evaluate("window.__mtr || {}") or self.m
        except Exception:
            pass
        return self.m

    def secs(self, a: str, b: str) -> float | None:
        return (self.m[b] - self.m[a]) / 1000 if self.m.get(a) and self.m.get(b) else None

    @property
    def rendered(self) -> bool:
        return bool(self.m.get("rendered"))

    @property
    def answer(self) -> str:
        return self.m.get("answer") or ("running" if self.m.get("result") else "")

    def text(self) -> str:
        try:
            return self.page.get_by_test_id("stMain").inner_text(timeout=2000)
        except Exception:
            return ""

    def errored(self, text: str) -> bool:
        try:
            boxes = self.page.locator("[data-testid='stException']").count()
        except Exception:
            boxes = 0
        return boxes > 0 or "Traceback (most recent call last)" in text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--students", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=2, help="epochs of every training (the default setup: 8)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for every student")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="mtr-classroom-"))
    proc, url, log = start_server(tmp / "runs", tmp / "cache")
    students: list[Student] = []
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    try:
        # the teacher opens the app before the class (imports, the built-in world), as in a lesson
        warm = browser.new_context()
        tp = warm.new_page()
        tp.goto(url + f"/train?epochs={args.epochs}", timeout=300_000)
        tp.wait_for_selector(".st-key-t_train button", timeout=300_000)
        tp.wait_for_selector(IDLE, timeout=300_000, state="attached")
        warm.close()
        for k in range(args.students):
            ctx = browser.new_context(viewport={"width": 1300, "height": 900})
            if k == 0:
                s = Student(k, ctx, "/lessons?lesson=seesaw", "lesson")
            elif k % 2:
                s = Student(k, ctx, f"/train?epochs={args.epochs}", "default")
            else:
                s = Student(k, ctx, f"/train?epochs={args.epochs}&seed={100 + k}", "own seed")
            students.append(s)
        for s in students:  # the class opens the address at once
            s.page.goto(url + s.path, wait_until="commit", timeout=120_000)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(s.read() and s.rendered for s in students):
            time.sleep(0.5)
        for s in students:  # every trainer presses Train within about a second (a DOM click: no
            if s.role != "lesson" and s.rendered:  # actionability waits, so 30 presses stay close)
                try:
                    s.page.evaluate("document.querySelector('.st-key-t_train button').click()")
                except Exception as e:  # the page records whether the click landed (window.__mtr.pressed)
                    print(f"student {s.k}: the click could not be sent: {e}", file=sys.stderr)
        t_end = time.monotonic() + args.timeout
        while time.monotonic() < t_end and any(not s.outcome for s in students):
            for s in students:
                if s.outcome:
                    continue
                m = s.read()
                text = s.text()
                if s.errored(text):
                    s.outcome = "error"
                elif s.role == "lesson":
                    if s.rendered and ("Press **Run" in text or "Press Run this lesson" in text
                                       or s.page.locator(".js-plotly-plot").count()):
                        s.outcome = "finished"
                elif m.get("answer") == "refused":
                    s.outcome = "refused"
                elif m.get("result"):
                    s.outcome = "finished"
            time.sleep(1.0)
        peak = hwm_mb(proc.pid)
    finally:
        browser.close()
        pw.stop()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    trainers = [s for s in students if s.role != "lesson"]
    results = [x for s in trainers if (x := s.secs("pressed", "result")) is not None]
    answers = [x for s in trainers if (x := s.secs("pressed", "answered")) is not None]
    renders = [(s.m["rendered"] - s.m["origin"]) / 1000 for s in students if s.rendered and s.m.get("origin")]
    server_tracebacks = log.read_text(errors="replace").count("Traceback")
    detail = {"load": os.getloadavg(), "cpus": os.cpu_count(), "epochs": args.epochs,
              "answers": {k: sum(s.answer == k for s in trainers) for k in ("running", "queued", "shared", "refused")},
              "p95_answer_s": pct(answers, 0.95), "max_answer_s": round(max(answers), 2) if answers else None,
              "not_rendered": sum(not s.rendered for s in students),
              "not_pressed": sum(1 for s in trainers if not s.m.get("pressed")), "server_tracebacks": server_tracebacks,
              "page_errors": sum(len(s.page_errors) for s in students),
              "runs_in_store": len([p for p in (tmp / "runs").iterdir() if not p.name.startswith(".")])
              if (tmp / "runs").is_dir() else 0}
    print(json.dumps(detail))
    out = {"students": len(students),
           "finished": sum(s.outcome == "finished" for s in students),
           "shared": sum(s.answer == "shared" for s in trainers),
           "refused": sum(s.outcome == "refused" for s in students),
           "lost": sum(1 for s in trainers if s.m.get("pressed") and not s.answer),
           "errors": sum(s.outcome == "error" for s in students) + server_tracebacks,
           "p50_result_s": pct(results, 0.5), "p95_result_s": pct(results, 0.95),
           "p95_first_render_s": pct(renders, 0.95),
           "server_peak_rss_mb": round(peak) if peak else None}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
