"""One setup call per notebook: seeds, device, threads, quiet logs, plot style, a versions line."""

from __future__ import annotations

import logging
import os
import platform
import random
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from course_utils import __version__
from course_utils.profiles import Profile, get_profile


@dataclass(frozen=True)
class CourseEnv:
    """What ``setup`` decided, for the rest of the notebook to read."""

    profile: Profile
    seed: int
    device: torch.device
    threads: int

    @property
    def on_gpu(self) -> bool:
        return self.device.type in ("cuda", "mps")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and all GPUs) so a run can be repeated exactly."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"SEED must be a non-negative integer, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)  # for subprocesses (data loaders, tokenizers)


def pick_device(prefer: str | None = None) -> torch.device:
    """The best device present: CUDA, then Apple's MPS, then the CPU (or ``prefer`` if given)."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


#: The device ``setup`` chose; ``None`` until it runs.
_CHOSEN_DEVICE: torch.device | None = None


def course_device() -> torch.device:
    """The device ``setup()`` chose for this process (or the best present, if it has not run).

    Builders of cached models and benchmarks train here, so a learner who passes
    ``setup(device="cpu")`` on a GPU machine gets every model built on the CPU.
    """
    return _CHOSEN_DEVICE if _CHOSEN_DEVICE is not None else pick_device()


#: Warnings the libraries give on every run of the course's own, correct code, silenced one by one by
#: their message (a regular expression matched at the start). Every other warning, the device and
#: dtype warnings of a first GPU run among them, still shows.
KNOWN_NOISE: tuple[tuple[type[Warning], str], ...] = (
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),  # peft asks transformers on every wrap
)


def quiet_libraries() -> None:
    """Silence the known-noisy warnings (``KNOWN_NOISE``) and the progress bars libraries print by default.

    The course shows its own progress bars for long loops; the libraries' own ones
    (dataset ``map``, model loading) only add noise to a notebook's output.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for category, message in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in ("transformers", "datasets", "peft", "accelerate", "huggingface_hub", "filelock"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - datasets is a dependency, but setup must not need it
        pass
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def set_plot_style() -> None:
    """One look for every figure in the course: readable sizes, light grid, no top/right spines."""
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 120,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titleweight": "bold",
            "font.size": 10,
            "legend.frameon": False,
        }
    )


#: Where a shown figure's title goes in the notebook output's metadata (the course site's alt text).
FIGURE_TITLE_KEY = "course_figure_title"


def figure_title(fig: Any) -> str:
    """A matplotlib figure's title: its suptitle, else its axes' titles joined by "; " ("" if it has none)."""
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text().strip():
        return suptitle.get_text().strip()
    return "; ".join(dict.fromkeys(t for ax in fig.axes if (t := ax.get_title().strip())))


def titles_in_figure_outputs() -> bool:
    """Make the inline backend store each figure's title in its output's metadata; True if it could.

    The course site (``tools.book``) uses it as the figure's alternative text, with the
    values an f-string title had when it ran. Only the metadata changes, never the image.
    """
    try:
        from matplotlib_inline import backend_inline
    except ImportError:  # pragma: no cover - not in a Jupyter kernel
        return False
    original = getattr(backend_inline, "_fetch_figure_metadata", None)
    if original is None:
        return False
    if getattr(original, "adds_course_title", False):
        return True

    def fetch_with_title(fig: Any) -> dict[str, Any] | None:
        metadata = original(fig) or {}
        title = figure_title(fig)
        return {**metadata, FIGURE_TITLE_KEY: title} if title else metadata or None

    fetch_with_title.adds_course_title = True  # type: ignore[attr-defined]
    backend_inline._fetch_figure_metadata = fetch_with_title
    return True


def versions_line(device: torch.device, threads: int) -> str:
    """One line with the versions that matter for reproducing a run."""
    import transformers

    return (
        f"course_utils {__version__} | python {platform.python_version()} | torch {torch.__version__} | "
        f"transformers {transformers.__version__} | device {device.type} | {threads} CPU threads"
    )


def setup(
    profile: str | Profile = "auto", seed: int = 0, *, device: str | None = None, verbose: bool = True
) -> CourseEnv:
    """Prepare a notebook: call it once, in the first cell after the parameters.

    >>> course = setup(PROFILE, SEED)      # doctest: +SKIP
    >>> course.profile.hidden_size, course.device
    """
    global _CHOSEN_DEVICE
    chosen = get_profile(profile)
    seed_everything(seed)
    dev = _CHOSEN_DEVICE = pick_device(device)
    threads = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    torch.set_num_threads(threads)
    quiet_libraries()
    set_plot_style()
    titles_in_figure_outputs()
    env = CourseEnv(profile=chosen, seed=seed, device=dev, threads=threads)
    if verbose:
        print(f"{versions_line(dev, threads)} | profile {chosen.name} | seed {seed}", file=sys.stdout)
    return env
