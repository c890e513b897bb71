"""KerasTuner HyperModels over the registry: one class, parameterised by registry name.

``build(hp)`` draws builder options from the entry's search space and compiles the model.
The compile step is deliberately simple (one loss per output kind) and replaceable through
``compile_fn``, so the training engine can supply the theses' losses and schedules.
"""
import keras
import keras_tuner as kt

from fer_keras.models.registry import REGISTRY
from fer_keras.models.search_spaces import COMPILE_KEYS

LOSSES = {"category": "categorical_crossentropy", "va": "mse", "au": "binary_crossentropy"}
OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
              "rmsprop": keras.optimizers.RMSprop}


def default_compile(model, learning_rate=1e-4, optimizer="adam"):
    """Adam (the theses' usual choice) and a loss per output: CCE, MSE, sigmoid CE."""
    model.compile(optimizer=OPTIMIZERS[optimizer](learning_rate=learning_rate),
                  loss={name: LOSSES[name] for name in model.output_names})
    return model


class RegistryHyperModel(kt.HyperModel):
    """The HyperModel of registry entry ``name``; ``fixed`` options are never searched."""

    def __init__(self, name, compile_fn=default_compile, **fixed):
        super().__init__(name=name, tunable=True)
        self.entry = REGISTRY[name]
        self.entry.options(**fixed)  # unknown keys fail here, not in the first trial
        self.fixed = fixed
        self.compile_fn = compile_fn

    def build(self, hp):
        drawn = self.entry.space(hp)
        compile_args = {k: drawn.pop(k) for k in COMPILE_KEYS if k in drawn}
        model = self.entry.builder(**self.entry.options(**{**drawn, **self.fixed}))
        return self.compile_fn(model, **compile_args)
