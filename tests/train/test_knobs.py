"""Training knobs (lr_schedule, class_weight, label_smoothing) become what Keras is given."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from toolkit.core.recipe import LrSchedule, recipe_from_dict
from toolkit.train import knobs


def _train(**section):
    return recipe_from_dict({"name": "t", "train": section}).train


def test_constant_is_the_plain_rate():
    assert knobs.learning_rate(LrSchedule(), 1e-3, epochs=5, steps=10) == 1e-3


def test_cosine_warms_up_then_decays_to_zero_at_the_phase_end():
    schedule = knobs.learning_rate(LrSchedule("cosine", warmup_epochs=1), 1e-3, epochs=5, steps=10)

    def at(step):
        return float(schedule(step))

    assert at(0) == pytest.approx(0.0, abs=1e-9)
    assert at(5) == pytest.approx(0.5e-3, rel=1e-4)  # half-way through the 10-step warm-up
    assert at(10) == pytest.approx(1e-3, rel=1e-4)  # peak at the end of warm-up
    assert at(30) == pytest.approx(0.5e-3, rel=1e-4)  # half-way through the 40 decay steps
    assert at(50) == pytest.approx(0.0, abs=1e-9)


def test_cosine_without_warmup_starts_at_the_rate():
    schedule = knobs.learning_rate(LrSchedule("cosine"), 2e-3, epochs=2, steps=4)
    assert float(schedule(0)) == pytest.approx(2e-3) and float(schedule(4)) == pytest.approx(1e-3, rel=1e-4)


def test_a_warmup_longer_than_a_short_phase_still_decays():
    schedule = knobs.learning_rate(LrSchedule("cosine", warmup_epochs=3), 1e-3, epochs=1, steps=4)
    assert float(schedule(3)) == pytest.approx(1e-3, rel=1e-4) and float(schedule(4)) < 1e-4


def test_balanced_class_weights_from_counts():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = knobs.class_weights(labels, 4, "balanced")
    # n / (k * count): 10 / (4 * 6), 10 / (4 * 3), 10 / (4 * 1); class 3 has no image
    assert weights == pytest.approx({0: 10 / 24, 1: 10 / 12, 2: 10 / 4, 3: 1.0})
    assert knobs.class_weights(labels, 4, "none") is None


def test_label_smoothing_configures_the_loss_and_one_hot_targets():
    train = _train(label_smoothing=0.1)
    loss = knobs.loss(train)
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    y = knobs.targets(np.array([2, 0]), 3, train)
    assert y.tolist() == [[0, 0, 1], [1, 0, 0]]
    # smoothing moves the target off 1: a perfect prediction has a loss > 0
    assert float(loss(y, y)) > 0.05
    plain = _train()
    assert isinstance(knobs.loss(plain), keras.losses.SparseCategoricalCrossentropy)
    assert knobs.targets(np.array([2, 0]), 3, plain).tolist() == [2, 0]


def test_fit_follows_the_schedule_and_the_class_weights():
    """One tiny fit: after 8 steps the optimizer's rate is the schedule's, and a heavy class weight
    changes the loss Keras reports."""
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.array([0] * 12 + [1] * 4)
    losses = {}
    for mode in ("none", "balanced"):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        rate = knobs.learning_rate(LrSchedule("cosine", warmup_epochs=1), 1e-2, epochs=4, steps=2)
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=knobs.loss(_train()))
        history = model.fit(
            x, y, batch_size=8, epochs=4, verbose=0, shuffle=False, class_weight=knobs.class_weights(y, 2, mode)
        )
        losses[mode] = history.history["loss"][0]
        assert int(model.optimizer.iterations) == 8
        assert float(model.optimizer.learning_rate) == pytest.approx(float(rate(8)), abs=1e-7)
    assert losses["none"] != pytest.approx(losses["balanced"], rel=1e-3)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd"])
def test_the_optimizer_is_the_recipes_at_the_phase_rate(name):
    made = knobs.optimizer(_train(optimizer=name), 3e-4)
    assert type(made).__name__.lower() == name and float(made.learning_rate) == pytest.approx(3e-4)
    schedule = knobs.learning_rate(LrSchedule("cosine"), 1e-3, epochs=2, steps=5)
    assert knobs.optimizer(_train(optimizer=name), schedule) is not knobs.optimizer(_train(optimizer=name), schedule)
