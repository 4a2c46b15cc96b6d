from dataclasses import FrozenInstanceError

import pytest
import torch

from course_utils.profiles import PROFILE_NAMES, PROFILES, get_profile, resolve_profile_name


def test_unknown_profile_lists_the_valid_names():
    with pytest.raises(ValueError) as info:
        get_profile("medium")
    for name in PROFILE_NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("bad", ["", "FASTER", None, 3])
def test_bad_profile_values_are_rejected(bad):
    with pytest.raises(ValueError):
        get_profile(bad)


@pytest.mark.parametrize(("cuda", "expected"), [(True, "full"), (False, "fast")])
def test_auto_is_full_with_a_cuda_gpu_and_fast_without(monkeypatch, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_profile_name("auto") == expected
    assert get_profile("AUTO") == PROFILES[expected]
    assert resolve_profile_name("fast") == "fast" and resolve_profile_name("full") == "full"  # only auto looks


def test_full_is_at_least_as_large_as_fast_everywhere():
    fast, full = PROFILES["fast"].to_dict(), PROFILES["full"].to_dict()
    for field, value in fast.items():
        if isinstance(value, int):
            assert full[field] >= value, field


def test_overrides_change_one_field_and_reject_unknown_ones():
    base = get_profile("fast")
    changed = get_profile("fast", num_seeds=base.num_seeds + 2)
    assert changed.num_seeds == base.num_seeds + 2
    assert {k for k, v in changed.to_dict().items() if v != base.to_dict()[k]} == {"num_seeds"}
    with pytest.raises(ValueError, match="no field"):
        get_profile("fast", hidden_sise=3)


def test_profiles_are_immutable():
    with pytest.raises(FrozenInstanceError):
        PROFILES["fast"].hidden_size = 1  # type: ignore[misc]


def test_tiny_bert_shapes_are_consistent():
    for profile in PROFILES.values():
        assert profile.hidden_size % profile.num_heads == 0, profile.name
