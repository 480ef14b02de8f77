"""The knobs where tuning matters: each changes what it should and nothing else."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnist.augment import Augmentation, affine_images
from mnist.batches import EpochBatches
from mnist.config import DEFAULTS, KNOBS, add_config_flags, config_from_flags, resolve_config
from mnist.data import MnistData, to_model_input
from mnist.errors import UserError
from mnist.model import CCNet
from mnist.train import make_lr_schedule, make_optimizer, train, train_one_epoch

AUGMENTATION = Augmentation(shift=2, rotate=15.0, scale=0.1)


@pytest.fixture(scope="module")
def digits(mnist_data: MnistData) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.array(mnist_data.train_images[:512])).unsqueeze(1),
            torch.from_numpy(mnist_data.train_labels[:512].astype(np.int64)))


def one_batch(images: torch.Tensor, labels: torch.Tensor, augmentation: Augmentation, seed: int = 0,
              epoch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batches = EpochBatches(images, labels, len(images), seed, epoch, augmentation)
    inputs, targets = next(iter(batches))
    return inputs, targets, batches.order


def test_no_augmentation_is_the_plain_shuffled_data(digits: tuple) -> None:
    images, labels = digits
    inputs, targets, order = one_batch(images, labels, Augmentation())
    assert torch.equal(inputs, to_model_input(images[order])) and torch.equal(targets, labels[order])


def test_augmented_images_keep_their_label_and_stay_in_the_frame(digits: tuple) -> None:
    images, labels = digits
    batches = EpochBatches(images, labels, len(images), 0, 1, AUGMENTATION)
    inputs, targets = next(iter(batches))
    order = batches.order
    assert torch.equal(targets, labels[order])
    pixels = inputs * 0.3081 + 0.1307
    assert not torch.allclose(inputs, to_model_input(images[order]))
    # The same digit, moved: undoing each image's own transform gives back its source image,
    # and it matches that source better than any other image of the batch.
    theta = batches.draw.theta[order]
    inverse = torch.linalg.inv(torch.cat([theta, torch.tensor([[[0.0, 0.0, 1.0]]]).expand(len(theta), 1, 3)], 1))
    restored = affine_images(pixels, inverse[:, :2]).flatten(1)
    source = (images[order].float() / 255).flatten(1)
    similarity = F.normalize(restored - restored.mean(1, keepdim=True), dim=1) @ \
        F.normalize(source - source.mean(1, keepdim=True), dim=1).T
    assert torch.equal(similarity.argmax(dim=1), torch.arange(len(order)))
    assert float(similarity.diag().min()) > 0.8
    # Still inside the frame: each image keeps its ink, up to its zoom's change of area (1 / det):
    # what would be pushed out of the 28x28 frame is lost, and nearly nothing is.
    ink_ratio = pixels.sum(dim=(1, 2, 3)) / (images[order].float() / 255).sum(dim=(1, 2, 3))
    lost = (1 - ink_ratio * torch.linalg.det(theta[:, :, :2])).abs()
    assert float(lost.max()) < 0.15 and float((lost < 0.03).float().mean()) > 0.95


def test_augmentation_differs_per_epoch_and_repeats_for_the_same_seed_and_epoch(digits: tuple) -> None:
    images, labels = digits
    first, _, _ = one_batch(images, labels, AUGMENTATION, seed=0, epoch=1)
    again, _, _ = one_batch(images, labels, AUGMENTATION, seed=0, epoch=1)
    later, _, order2 = one_batch(images, labels, AUGMENTATION, seed=0, epoch=2)
    other, _, _ = one_batch(images, labels, AUGMENTATION, seed=1, epoch=1)
    assert torch.equal(first, again)
    _, _, order1 = one_batch(images, labels, Augmentation(), seed=0, epoch=1)
    assert not torch.allclose(first, later[torch.argsort(order2)][order1])  # same images, other transforms
    assert not torch.allclose(first, other)


PEOPLES_VARIATION = {"shear": 20.0, "stretch": 0.25, "elastic": 3.0, "thickness": 0.8, "erase": 0.5}


def center_of_mass(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 2) row and column of each image's centre of mass."""
    axis = torch.arange(pixels.shape[-1], dtype=pixels.dtype)
    mass = pixels.sum(dim=(1, 2, 3))
    return torch.stack([(pixels.sum(dim=3)[:, 0] * axis).sum(1) / mass, (pixels.sum(dim=2)[:, 0] * axis).sum(1) / mass], 1)


@pytest.mark.parametrize("knob", sorted(PEOPLES_VARIATION))
def test_each_knob_of_peoples_variation_keeps_labels_stays_in_the_frame_and_repeats(digits: tuple, knob: str) -> None:
    images, labels = digits
    augmentation = Augmentation(**{knob: PEOPLES_VARIATION[knob]})
    inputs, targets, order = one_batch(images, labels, augmentation)
    assert torch.equal(targets, labels[order])  # labels never change
    source = images[order].float() / 255
    pixels = (inputs * 0.3081 + 0.1307).clamp(0, 1)
    changed = (pixels - source).abs().flatten(1).amax(1) > 0.1
    assert float(changed.float().mean()) > (0.3 if knob == "erase" else 0.75)  # it acts on most images
    # Still inside the frame: the ink stays where it was (centre of mass within 3 px), and keeps
    # most of its mass (thickness changes it by design, but not to nothing or to a blot).
    assert float((center_of_mass(pixels) - center_of_mass(source)).abs().max()) < 3
    mass = pixels.sum(dim=(1, 2, 3)) / source.sum(dim=(1, 2, 3))
    assert float(mass.min()) > 0.4 and float(mass.max()) < 2.5
    border = pixels.clone()
    border[:, :, 2:-2, 2:-2] = 0  # the two outermost rings of the frame: nearly no ink gets there
    assert float((border.sum(dim=(1, 2, 3)) / pixels.sum(dim=(1, 2, 3))).mean()) < 0.01
    again, _, _ = one_batch(images, labels, augmentation)
    later, _, later_order = one_batch(images, labels, augmentation, epoch=2)
    assert torch.equal(inputs, again)  # the same (seed, epoch): the same draw
    assert not torch.allclose(inputs, later[torch.argsort(later_order)][order])  # another epoch: another draw


def test_erasing_takes_out_a_small_box_and_nothing_else(digits: tuple) -> None:
    images, labels = digits
    inputs, _, order = one_batch(images, labels, Augmentation(erase=1.0))
    pixels = (inputs * 0.3081 + 0.1307).clamp(0, 1)
    source = images[order].float() / 255
    assert bool((pixels <= source + 1e-5).all())  # only taken away
    removed = (source - pixels > 1e-5).flatten(1).sum(1)
    assert int(removed.max()) <= 7 * 7


def test_whole_pixel_shift_through_the_affine_path_equals_the_exact_shift(digits: tuple) -> None:
    images, labels = digits
    exact, _, _ = one_batch(images, labels, Augmentation(shift=2))
    # rotate and scale so small that they change nothing visible: the shifts alone remain.
    resampled, _, _ = one_batch(images, labels, Augmentation(shift=2, rotate=1e-9, scale=1e-9))
    assert torch.allclose(exact, resampled, atol=1e-4)


def straight_and_resumed(config: dict, data: MnistData, folder) -> tuple[dict, dict]:
    """The final states of a run straight through and of the same run resumed from its first epoch's checkpoint."""
    from mnist.checkpoint import load_checkpoint, save_checkpoint

    straight: dict = {}
    train(config, data=data, on_epoch=lambda metrics, state: straight.update(state))
    saved = folder / "epoch1.pt"
    train(config, data=data,
          on_epoch=lambda metrics, state: save_checkpoint(state, saved) if metrics["epoch"] == 1 else None)
    resumed: dict = {}
    train(config, data=data, on_epoch=lambda metrics, state: resumed.update(state),
          resume_from=load_checkpoint(saved, for_resume=True))
    return straight, resumed


def test_resume_with_augmentation_and_a_per_batch_schedule_is_exact(mnist_data: MnistData, tmp_path) -> None:
    config = {"limit": 600, "epochs": 2, "batch_size": 64, "lr": 2e-3, "threads": 1, "device": "cpu", "seed": 3,
              "rotate": 10.0, "scale": 0.1, "shift": 1, "schedule": "onecycle", "weight_decay": 1e-2,
              "label_smoothing": 0.1}
    straight, resumed = straight_and_resumed(config, mnist_data, tmp_path)
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    assert straight["history"][1] == {**resumed["history"][1], "epoch_time_s": straight["history"][1]["epoch_time_s"],
                                      "images_per_s": straight["history"][1]["images_per_s"]}


def test_weight_decay_reaches_the_optimizer_and_zero_keeps_adam() -> None:
    model = CCNet(0.5)
    plain = make_optimizer(model, resolve_config({}))
    decayed = make_optimizer(model, resolve_config({"weight_decay": 0.01}))
    assert type(plain) is torch.optim.Adam and plain.param_groups[0]["weight_decay"] == 0
    assert isinstance(decayed, torch.optim.AdamW) and decayed.param_groups[0]["weight_decay"] == 0.01


def test_label_smoothing_reaches_the_loss(digits: tuple) -> None:
    images, labels = digits
    torch.manual_seed(0)
    model = CCNet(dropout=0.0)
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # the model stays as it is
    batches = EpochBatches(images, labels, len(images), 0, 1)
    smoothed, _ = train_one_epoch(model, frozen, batches, amp=False, label_smoothing=0.2)
    plain, _ = train_one_epoch(model, frozen, batches, amp=False)
    inputs, targets = next(iter(batches))
    with torch.no_grad():
        expected = F.cross_entropy(model(inputs), targets, label_smoothing=0.2).item()
    assert smoothed == pytest.approx(expected, rel=1e-5) and smoothed != pytest.approx(plain, rel=1e-3)


def learning_rates(config: dict, batches_per_epoch: int = 10) -> tuple[list[float], bool]:
    """(the lr of every optimizer step of the run, stepped per batch?)."""
    optimizer = make_optimizer(CCNet(0.5), config)
    scheduler, per_batch = make_lr_schedule(optimizer, config, batches_per_epoch)
    rates = []
    for _ in range(config["epochs"]):
        for _ in range(batches_per_epoch):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if per_batch:
                scheduler.step()
        if not per_batch:
            scheduler.step()
    return rates, per_batch


@pytest.mark.parametrize("schedule", ["step", "cosine", "onecycle"])
def test_lr_schedules_follow_the_budget(schedule: str) -> None:
    config = resolve_config({"schedule": schedule, "lr": 1e-3, "epochs": 4, "step_size": 2, "gamma": 0.5})
    rates, per_batch = learning_rates(config)
    if schedule == "step":  # the tutorial's: per epoch, x gamma every step_size epochs
        assert not per_batch and rates[0] == rates[19] == 1e-3 and rates[20] == rates[39] == 5e-4
    elif schedule == "cosine":
        assert rates[0] == 1e-3 and rates[-1] < 1e-5 and all(a >= b for a, b in zip(rates, rates[1:]))
    else:  # warm up to lr in the first quarter, then down to ~0
        assert max(rates) == pytest.approx(1e-3) and int(np.argmax(rates)) in (9, 10)
        assert rates[0] < 1e-4 and rates[-1] < 1e-6


@pytest.mark.parametrize("schedule", ["step", "cosine", "onecycle"])
def test_a_warm_up_rises_linearly_to_lr_then_the_schedule_runs_over_the_rest(schedule: str) -> None:
    config = resolve_config({"schedule": schedule, "lr": 1e-3, "epochs": 4, "step_size": 2, "gamma": 0.5,
                             "warmup_epochs": 1.5})
    rates, per_batch = learning_rates(config)
    assert per_batch
    peak = int(np.argmax(rates))
    # 1.5 epochs of 10 batches (one-cycle peaks one step sooner: its phases end at step pct_start * total - 1)
    assert peak == (14 if schedule == "onecycle" else 15) and rates[peak] == pytest.approx(1e-3)
    rising = np.diff(rates[:peak + 1])
    assert (rising > 0).all()
    if schedule != "onecycle":  # from 1% of lr in equal steps (one-cycle has its own cosine-shaped rise)
        assert rates[0] == pytest.approx(1e-5) and np.allclose(rising, rising[0])
    if schedule == "step":  # then x gamma every step_size epochs, counted from the warm-up's end
        assert rates[15] == rates[34] == pytest.approx(1e-3) and rates[35] == rates[39] == pytest.approx(5e-4)
    else:  # then down to ~0 at the end of the budget
        assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:])) and rates[-1] < 2e-5


def test_no_warm_up_keeps_the_schedules_as_they_were() -> None:
    for schedule in ("step", "cosine", "onecycle"):
        config = resolve_config({"schedule": schedule, "lr": 1e-3, "epochs": 4, "step_size": 2, "gamma": 0.5})
        optimizer = make_optimizer(CCNet(0.5), config)
        scheduler, _ = make_lr_schedule(optimizer, config, 10)
        expected = {"step": torch.optim.lr_scheduler.StepLR, "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
                    "onecycle": torch.optim.lr_scheduler.OneCycleLR}[schedule]
        assert type(scheduler) is expected


@pytest.mark.parametrize("overrides, message", [
    ({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs=5 is not shorter than the budget of 5 epochs"),
    ({"warmup_epochs": 12.5, "epochs": 10}, "warmup_epochs=12.5 is not shorter than the budget of 10 epochs"),
    ({"warmup_epochs": -1}, "warmup_epochs must be"),
    ({"ema_decay": 0}, "ema_decay must be in (0, 1)"), ({"ema_decay": 1}, "ema_decay must be in (0, 1)"),
    ({"ema_decay": 1.5}, "ema_decay must be in (0, 1)"), ({"ema_decay": -0.5}, "ema_decay must be in (0, 1)"),
    ({"ema": "yes"}, "ema must be true or false"),
])
def test_bad_warm_ups_and_ema_decays_are_refused_naming_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(UserError) as error:
        resolve_config(overrides)
    assert message in str(error.value)


@pytest.mark.slow
def test_ema_is_what_is_validated_and_checkpointed(mnist_data: MnistData) -> None:
    from mnist.model import model_from_checkpoint
    from mnist.data import split_train_val
    from mnist.train import validate

    config = {"limit": 1200, "epochs": 2, "batch_size": 64, "lr": 2e-3, "threads": 1, "device": "cpu", "seed": 1,
              "schedule": "cosine", "amp": False}  # fp32: validated below as train validates
    runs = {}
    for name, extra in {"plain": {}, "ema": {"ema": True, "ema_decay": 0.9}, "ema_nearly_off": {"ema": True,
                                                                                                  "ema_decay": 1e-9}}.items():
        final: dict = {}
        history = train({**config, **extra}, data=mnist_data, on_epoch=lambda m, state: final.update(state))
        runs[name] = (history, final)
    split = split_train_val(mnist_data, 0.2, 1200)
    images = torch.from_numpy(np.array(split.val_images)).unsqueeze(1)
    labels = torch.from_numpy(split.val_labels.astype(np.int64))
    history, state = runs["ema"]
    # The same training steps (the average changes no gradient): the weights trained are the plain run's.
    for name, tensor in runs["plain"][1]["model"].items():
        assert torch.equal(tensor, state["trained_model"][name]), name
    # "model" is the average, not the last step's weights, and the accuracy reported is the average's.
    assert not all(torch.equal(state["model"][k], state["trained_model"][k]) for k in state["model"])
    assert history[-1]["val_acc"] == pytest.approx(
        validate(model_from_checkpoint(state, torch.device("cpu")), images, labels, amp=False)[1])
    assert state["ema_updates"] == 2 * (960 // 64)  # one update per optimizer step
    # With (almost) no memory, the average is the last step's weights.
    nearly_off = runs["ema_nearly_off"][1]
    for name, tensor in nearly_off["model"].items():
        assert torch.allclose(tensor, nearly_off["trained_model"][name], atol=1e-6), name


def test_the_ema_decay_ramps_up_then_holds_at_its_setting() -> None:
    from mnist.train import ema_step

    update = ema_step(0.999)
    averaged, current = torch.zeros(3), torch.ones(3)
    # After n updates the decay is (1 + n) / (10 + n): 2/11 after one, so most of the new weights come in...
    assert torch.allclose(update(averaged, current, torch.tensor(1)), torch.full((3,), 1 - 2 / 11))
    # ...and 0.999 from n = 8,990 on: a thousandth of the new weights per step.
    assert torch.allclose(update(averaged, current, torch.tensor(50_000)), torch.full((3,), 0.001))


@pytest.mark.slow
def test_resume_with_ema_and_a_warm_up_is_exact(mnist_data: MnistData, tmp_path) -> None:
    config = {"limit": 600, "epochs": 3, "batch_size": 64, "lr": 2e-3, "threads": 1, "device": "cpu", "seed": 3,
              "rotate": 5.0, "schedule": "cosine", "warmup_epochs": 1.5, "ema": True, "ema_decay": 0.95}
    straight, resumed = straight_and_resumed(config, mnist_data, tmp_path)
    for weights in ("model", "trained_model"):
        for name, tensor in straight[weights].items():
            assert torch.equal(tensor, resumed[weights][name]), (weights, name)
    assert straight["ema_updates"] == resumed["ema_updates"]
    assert [row["val_acc"] for row in straight["history"]] == [row["val_acc"] for row in resumed["history"]]


def test_an_ema_checkpoint_without_its_trained_weights_is_refused_for_resume(mnist_data: MnistData, tmp_path) -> None:
    from mnist.checkpoint import load_checkpoint, save_checkpoint

    config = {"limit": 300, "epochs": 1, "batch_size": 64, "threads": 1, "device": "cpu", "ema": True}
    final: dict = {}
    train(config, data=mnist_data, on_epoch=lambda metrics, state: final.update(state))
    del final["trained_model"]
    save_checkpoint(final, tmp_path / "last.pt")
    assert load_checkpoint(tmp_path / "last.pt")["config"]["ema"]  # still a model to read digits with
    with pytest.raises(UserError, match="last.pt: trained with ema but holds no trained_model"):
        load_checkpoint(tmp_path / "last.pt", for_resume=True)


def test_every_knob_has_a_flag_and_the_tutorials_short_flags_stay() -> None:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["-m", "CCNet", "-l", "0.001", "-b", "64", "-e", "3", "--rotate", "10",
                              "--weight-decay", "0.01", "--label-smoothing", "0.1", "--schedule", "cosine",
                              "--no-amp"])
    config = config_from_flags(args, DEFAULTS)
    assert (config["lr"], config["batch_size"], config["epochs"], config["rotate"]) == (0.001, 64, 3, 10.0)
    assert (config["weight_decay"], config["label_smoothing"], config["schedule"], config["amp"]) == \
        (0.01, 0.1, "cosine", False)
    # Every knob's flag reaches the config: each set to a value other than its default, parsed back. Only the
    # model has no other value to set (CCNet is the one there is).
    single_valued = []
    for key, knob in KNOBS.items():
        action = next(action for action in parser._actions if action.dest == key)
        flag = max((option for option in action.option_strings if not option.startswith("--no-")), key=len)
        other = next((value for value in (True, False, "tutorial", "cosine", "cpu", 3, 0.25, 7, 1000, 0.1)
                      if value != knob.default and knob.rule.check(value)), None)
        if other is None:
            single_valued.append(key)
            continue
        argv = [flag if other is True else f"--no-{flag[2:]}"] if isinstance(other, bool) else [flag, str(other)]
        assert config_from_flags(parser.parse_args(argv), DEFAULTS)[key] == other, key
    assert single_valued == ["model"]


@pytest.mark.parametrize("key, value", [
    ("rotate", 46), ("rotate", -1), ("scale", 0.6), ("weight_decay", -0.1), ("label_smoothing", 0.5),
    ("schedule", "linear"), ("shift", 1.5), ("amp", "yes"), ("shear", 50), ("stretch", -0.1), ("elastic", 7),
    ("thickness", 1.5), ("erase", 2), ("synthetic", 1.5), ("synthetic", -0.1),
])
def test_new_knobs_refuse_out_of_range_values_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(UserError, match=f"^{key} must be"):
        resolve_config({key: value})


@pytest.mark.parametrize("steps", [2, 3, 4, 5, 8])
def test_one_cycle_runs_on_a_few_steps_and_still_rises_then_falls(steps: int) -> None:
    """4 steps (2 epochs of 2 batches: 300 images at batch 512) made torch divide by a zero-length warm-up."""
    config = resolve_config({"schedule": "onecycle", "lr": 1e-3, "epochs": 1})
    rates, per_batch = learning_rates(config, batches_per_epoch=steps)
    assert per_batch and len(rates) == steps and rates[0] < 1e-3 and rates[-1] < 1e-3
    if steps >= 3:  # two steps have no whole step between start and end to peak at
        assert max(rates) == pytest.approx(1e-3) and 0 < int(np.argmax(rates)) < steps - 1
