import random

import numpy as np
import pytest
import torch

from course_utils.env import pick_device, seed_everything, setup


def draws():
    return random.random(), float(np.random.rand()), torch.rand(4).tolist()


def test_seeding_makes_every_generator_repeatable():
    seed_everything(123)
    first = draws()
    seed_everything(123)
    assert draws() == first
    seed_everything(124)
    assert draws() != first


def test_training_is_deterministic_under_a_seed():
    def train() -> torch.Tensor:
        seed_everything(7)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
        optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(32, 8), torch.randn(32, 1)
        for _ in range(5):
            optimiser.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimiser.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(train(), train())


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_bad_seeds_are_rejected(bad):
    with pytest.raises(ValueError, match="SEED"):
        seed_everything(bad)


def test_setup_prints_one_line_with_versions_and_device(capsys):
    env = setup("fast", 3)
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    for part in ("torch", "transformers", f"device {env.device.type}", "profile fast", "seed 3"):
        assert part in line
    assert env.profile.name == "fast" and env.seed == 3
    assert torch.get_num_threads() == env.threads


def test_pick_device_prefers_an_explicit_choice_and_defaults_sensibly():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert pick_device().type == expected
    else:
        assert pick_device().type in ("cpu", "mps")


def test_a_shown_figure_carries_its_title_in_the_output_metadata():
    """The inline backend's figure metadata gets the title, which the course site uses as alt text."""
    import matplotlib.pyplot as plt
    from matplotlib_inline import backend_inline

    from course_utils.env import FIGURE_TITLE_KEY, figure_title, titles_in_figure_outputs

    assert titles_in_figure_outputs() and titles_in_figure_outputs()  # patching twice wraps once
    fig, (left, right) = plt.subplots(1, 2)
    left.set_title("left")
    right.set_title("right")
    assert backend_inline._fetch_figure_metadata(fig)[FIGURE_TITLE_KEY] == "left; right"
    fig.suptitle(f"cost at {3} steps")
    assert figure_title(fig) == "cost at 3 steps"
    untitled = plt.figure()
    assert FIGURE_TITLE_KEY not in (backend_inline._fetch_figure_metadata(untitled) or {})
    plt.close("all")
