"""Helpers shared by the benchmarks: paths, the ml-latest-small protocol, torch-rechub set-up,
machine description, timing statistics. Benchmarks only; nothing in mtrlib imports this.

torch-rechub is a benchmark-only dependency: `pip install --no-deps torch-rechub==0.9.0`
(the Makefile's `bench` target does it). Its progress bars are switched off (TQDM_DISABLE, set
before tqdm is imported) and its prints are swallowed: both cost it a little time, so the
comparison errs in the peer's favour.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # read by tqdm at import time

REPO = Path(__file__).resolve().parents[1]
ML_DIR = REPO.parent / "shared" / "data" / "ml-latest-small"
OUT = REPO / "bench" / "out"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import mtrlib  # noqa: E402,F401  (sets OMP_WAIT_POLICY=PASSIVE before torch is imported: for every contender)

ML_TASKS = ["watched=implicit", "liked=rating>=4"]


# -- data ---------------------------------------------------------------------------------------------

def ml_available() -> bool:
    return (ML_DIR / "ratings.csv").exists() and (ML_DIR / "movies.csv").exists()


def load_ml(genres_only: bool = True, ml_dir: Path = ML_DIR):
    """ml-latest-small through the project's loader; the protocol's only item feature is genres."""
    from mtrlib.data import load
    ds = load(str(ml_dir / "ratings.csv"), str(ml_dir / "movies.csv"), None)
    if genres_only:
        ds.item_features = {c: k for c, k in ds.item_features.items() if c == "genres" or k == "text"}
    return ds


def ml_config(arch: str = "mmoe", use_features: bool = True, epochs: int = 5, seed: int = 0, device: str = "cpu",
              **kw):
    """The models issue's protocol: watched=implicit, liked=rating>=4 (whole space), 4 negatives
    per rating, per-user temporal split 70/10/20."""
    from mtrlib.config import DataConfig, ModelConfig, TrainConfig
    data = DataConfig(source="files", tasks=list(ML_TASKS), negatives=4, split="temporal", val_frac=0.1,
                      test_frac=0.2, use_features=use_features)
    return TrainConfig(data=data, model=ModelConfig(arch=arch), epochs=epochs, seed=seed, device=device, **kw)


# -- torch-rechub ----------------------------------------------------------------------------------------

def rechub_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("torch-rechub")
    except Exception:
        return None


def rechub_model(kind: str, n_users: int, n_items: int, emb_dim: int, n_tasks: int, *, experts=(64, 32),
                 n_experts: int = 4, towers=(32,), shared=(64, 32), specific: int = 1, shared_experts: int = 2,
                 levels: int = 1):
    """torch-rechub's own model class on user/item id SparseFeatures (its MLPs carry BatchNorm)."""
    from torch_rechub.basic.features import SparseFeature
    from torch_rechub.models.multi_task import MMOE, PLE, SharedBottom
    feats = [SparseFeature("user_id", n_users, embed_dim=emb_dim), SparseFeature("item_id", n_items, embed_dim=emb_dim)]
    types = ["classification"] * n_tasks
    tw = [{"dims": list(towers)} for _ in range(n_tasks)]
    if kind == "mmoe":
        return MMOE(feats, types, n_expert=n_experts, expert_params={"dims": list(experts)}, tower_params_list=tw)
    if kind == "shared-bottom":
        return SharedBottom(feats, types, bottom_params={"dims": list(shared)}, tower_params_list=tw)
    if kind == "ple":
        return PLE(feats, types, n_level=levels, n_expert_specific=specific, n_expert_shared=shared_experts,
                   expert_params={"dims": list(experts)}, tower_params_list=tw)
    raise ValueError(kind)


def rechub_loaders(prep, batch_size: int):
    """train / val / test DataLoaders the way torch-rechub's examples build them: a dict of
    numpy id columns and a label matrix through its DataGenerator (per-sample TorchDataset)."""
    from torch_rechub.utils.data import DataGenerator

    def xy(e):
        return ({"user_id": e.user.numpy().astype("int64"), "item_id": e.item.numpy().astype("int64")},
                e.labels.numpy().astype("float32"))

    (xt, yt), (xv, yv), (xs, ys) = xy(prep.train), xy(prep.val), xy(prep.test)
    return DataGenerator(xt, yt).generate_dataloader(x_val=xv, y_val=yv, x_test=xs, y_test=ys, batch_size=batch_size)


def rechub_trainer(model, n_tasks: int, lr: float, weight_decay: float, epochs: int, model_path: str):
    import torch
    from torch_rechub.trainers import MTLTrainer
    return MTLTrainer(model, task_types=["classification"] * n_tasks, optimizer_fn=torch.optim.Adam,
                      optimizer_params={"lr": lr, "weight_decay": weight_decay}, n_epoch=epochs,
                      earlystop_patience=1000, device="cpu", model_path=model_path)


@contextlib.contextmanager
def quiet():
    """Swallow stdout (torch-rechub prints every epoch)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# -- machine and statistics ---------------------------------------------------------------------------------

def loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import torch
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_rechub": rechub_version(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "loadavg_start": [round(x, 2) for x in loadavg()]}


def median(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def spread(xs) -> str:
    """'median (min-max, n=K)'."""
    if not xs:
        return "-"
    return f"{median(xs):,.0f} ({min(xs):,.0f}-{max(xs):,.0f}, n={len(xs)})"


def save_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


# -- the app in a real browser (app_latency, memory) ----------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
RUNNING = "[data-testid='stApp'][data-test-script-state='running']"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Streamlit's default, which the app turns off in .streamlit/config.toml (see BENCHMARKS.md)
WITH_GC = ["--runner.postScriptGC", "true"]


class AppServer:
    """`streamlit run app.py` on a free port with a temporary run store (MTR_RUN_STORE) and cache;
    `extra_env` adds settings (e.g. MTR_MAX_JOBS). A context manager; `.pid`, `.url`, `.store`,
    `.started_s` (launch to healthy)."""

    def __init__(self, extra_env: dict | None = None, extra_args: list[str] | None = None):
        self.extra_env = extra_env or {}
        self.extra_args = list(extra_args or [])

    def __enter__(self):
        import subprocess
        import tempfile
        import urllib.request
        self._tmp = tempfile.TemporaryDirectory(prefix="mtr-bench-")
        self.store = Path(self._tmp.name) / "runs"
        self.store.mkdir()
        port = free_port()
        env = dict(os.environ, MTR_RUN_STORE=str(self.store), MTR_CACHE_DIR=str(Path(self._tmp.name) / "cache"),
                   PYTHONUNBUFFERED="1", **self.extra_env)
        env.pop("TQDM_DISABLE", None)
        self.log_path = Path(self._tmp.name) / "streamlit.log"
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false", *self.extra_args]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit not healthy after 120 s:\n{self.log_path.read_text()}")
            time.sleep(0.1)
        self.started_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc):
        import subprocess
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self._log.close()
        text = self.log_path.read_text(errors="replace")
        if "Traceback" in text:
            print("streamlit server log had a traceback:\n" + text[-4000:], file=sys.stderr)
        self._tmp.cleanup()


def proc_mem(pid: int) -> dict:
    """{'rss': bytes, 'hwm': bytes} from /proc/<pid>/status (VmRSS, VmHWM = peak RSS)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":", 1)
            out["rss" if k == "VmRSS" else "hwm"] = int(v.split()[0]) * 1024
    return out


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process."""
    s = Path(f"/proc/{pid}/stat").read_text()
    f = s[s.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def chromium_cpu() -> float:
    """CPU seconds used so far by every running Chromium process."""
    tot = 0.0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if b"chromium" not in (p / "cmdline").read_bytes():
                continue
            tot += proc_cpu(int(p.name))
        except (OSError, ValueError):
            pass
    return tot


class Browser:
    """Debian's Chromium through Playwright (no browser download). A context manager."""

    def __enter__(self):
        from playwright.sync_api import sync_playwright
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        return self

    def page(self, width: int = 1400, height: int = 1000):
        ctx = self.browser.new_context(viewport={"width": width, "height": height})
        ctx.set_default_timeout(120_000)
        return ctx.new_page()

    def __exit__(self, *exc):
        try:
            self.browser.close()
        finally:
            self._pw.stop()


def wait_idle(page, timeout: float = 120_000, settle: float = 1_500) -> None:
    """The app's script run is over (give a just-triggered rerun `settle` ms to start first)."""
    try:
        page.wait_for_selector(RUNNING, timeout=settle, state="attached")
    except Exception:
        pass
    page.wait_for_selector(IDLE, timeout=timeout, state="attached")


def open_app(page, url: str, path: str = "/") -> None:
    page.goto(url + path, wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid='stApp']", timeout=120_000)
    wait_idle(page)
    page.get_by_role("heading", level=1).first.wait_for(timeout=120_000)


def go(page, title: str, timeout: float = 120_000) -> None:
    """Switch page through the sidebar navigation (same session)."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    page.wait_for_function("(t) => { const h = document.querySelector('[data-testid=stMain] h1');"
                           " return h && h.innerText.startsWith(t); }", arg=title.split(" ")[0], timeout=timeout)
    wait_idle(page, timeout=timeout)


def main_area(page):
    return page.get_by_test_id("stMain")


def upload_movielens(page) -> None:
    """Data page: 'Upload files', then ratings.csv and movies.csv into the Interactions / Items inputs."""
    m = main_area(page)
    m.get_by_role("radio", name="Upload files").click()
    m.get_by_test_id("stFileUploader").nth(2).wait_for(timeout=120_000)
    wait_idle(page)
    for label, f in (("Interactions", "ratings.csv"), ("Items", "movies.csv")):
        m.get_by_test_id("stFileUploader").filter(has_text=label).locator("input[type=file]").set_input_files(
            str(ML_DIR / f))
        wait_idle(page)
    m.get_by_test_id("stMetric").filter(has_text="Interactions").filter(has_text="100,836").wait_for(timeout=120_000)


def train_button(page):
    return main_area(page).get_by_role("button", name="Train", exact=True)


FINISHED_JS = """() => { const a = document.querySelector("[data-testid=stMain] [data-testid=stAlertContentSuccess]");
    return !!a && a.innerText.includes('Finished') && document.body.innerText.includes('Test metrics'); }"""

POINTS_JS = """(title) => { let best = 0;
    for (const el of document.querySelectorAll('.js-plotly-plot')) {
        const t = el.layout && el.layout.title ? (el.layout.title.text || el.layout.title) : '';
        if (!String(t).includes(title)) continue;
        const n = (el._fullData || []).reduce((s, tr) => s + (tr.x && tr.x.length ? tr.x.length : 0), 0);
        best = Math.max(best, n); }
    return best; }"""


def clean(obj):
    """JSON-safe copy: non-finite floats -> None (the last line must be strict JSON)."""
    import math
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return clean(obj.item())
    return obj


def json_line(obj) -> str:
    return json.dumps(clean(obj), allow_nan=False)
