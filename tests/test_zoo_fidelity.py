"""Model zoo fidelity for theses 001-004 (issue 16): options the theses state, checked against an
independent computation."""
import numpy as np
import tensorflow as tf

from fer_keras.models import entry


def _small(name, **extra):
    spec = entry(name)
    weights = {"weights": None} if "weights" in spec.options() else {}
    return spec.builder(**spec.options(**{**spec.small, **weights, **extra}))


def test_weight_decay_is_slims_l2_on_the_trainable_kernels_only():
    """Thesis 004's 4e-5: the loss gains 4e-5 * sum(w ** 2) / 2 (tf.nn.l2_loss) per trainable kernel,
    no bias or BatchNorm term; a model without it adds nothing."""
    model = _small("vgg16_au", trainable="all")
    model({"image": tf.zeros((1, 32, 32, 3))})
    kernels = [v for v in model.trainable_weights if v.path.endswith("/kernel")]
    expected = 4e-5 * sum(float(np.sum(np.square(v.numpy()))) for v in kernels) / 2
    assert len(kernels) == 13 + 3  # the 13 convolutions, fc6, fc7 and the AU layer
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)
    biases = [v for v in model.weights if v.regularizer is not None and not v.path.endswith("kernel")]
    assert not biases
    plain = _small("vgg16_au", weight_decay=0.0)
    plain({"image": tf.zeros((1, 32, 32, 3))})
    assert not plain.losses


def test_c3d_convlstm_and_cnn1d_variants_build_and_save(tmp_path):
    import keras

    c3d = _small("c3d", pooling="average", conv_dropout=0.3, dropout=0.5)
    kinds = [type(layer).__name__ for layer in c3d.layers]
    assert kinds.count("AveragePooling3D") == 3 and "MaxPooling3D" not in kinds
    assert [layer.rate for layer in c3d.layers if layer.name.startswith("conv3d_dropout")] == [0.3] * 3
    assert _small("c3d").count_params() == c3d.count_params()  # options without weights
    convlstm = _small("convlstm", pool="max")  # input 8, same padding: 8 -> pool 4 -> pool 2
    assert [type(layer).__name__ for layer in convlstm.layers if "pooling" in layer.name] == ["MaxPooling3D", "MaxPooling2D"]
    assert convlstm.get_layer("flatten").output.shape[-1] == 2 * 2 * 8
    # valid padding at 16: 3x3 -> 14, pool -> 7, 3x3 -> 5, pool -> 2: Flatten 2 x 2 x 8
    big = entry("convlstm").builder(**entry("convlstm").options(seq_len=3, input_size=16, pool="average", padding="valid"))
    assert big.get_layer("flatten").output.shape[-1] == 2 * 2 * 8
    cnn = entry("cascade_cnn1d").builder(**entry("cascade_cnn1d").options(
        seq_len=20, input_dim=8, padding="valid", pool_size=3, pool_strides=2, filters=(4, 4, 4, 4)))
    # valid k=3: 20 -> 18 -> 16, pool 3/2 -> 7, -> 5 -> 3, pool -> 1: Flatten 1 x 4
    assert cnn.get_layer("flatten").output.shape[-1] == 4
    for model in (c3d, big, cnn):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        assert keras.models.load_model(path).count_params() == model.count_params()


def test_phase1_head_search_draws_a_dropout_per_dense_layer():
    import keras_tuner as kt

    from fer_keras.models.search_spaces import thesis002_finetune

    hp = kt.HyperParameters()
    for name, value in {"dense_layers": 2, "units_0": 512, "units_1": 256, "dropout_0": 0.3, "dropout_1": 0.7}.items():
        hp.Fixed(name, value)
    options = thesis002_finetune(hp)
    options.pop("optimizer")
    model = _small("vggface_finetune", **options)
    rates = {layer.name: layer.rate for layer in model.layers if layer.name.endswith("_dropout")}
    assert rates == {"dense_dropout": 0.3, "dense_1_dropout": 0.7}
    assert [model.get_layer(n).units for n in ("dense", "dense_1")] == [512, 256]


def test_alexnet_groups_as_thesis001_states_and_backbone_options_reach_the_builder():
    import keras

    from fer_keras.models import alexnet

    image = keras.Input((96, 96, 3))
    grouped = keras.Model(image, alexnet.alexnet(image, groups=2))
    # conv1 11x11x3x96, conv2 5x5x48x256, conv3 3x3x256x384, conv4 3x3x192x384, conv5 3x3x192x256 (+ biases)
    convs = [(3, 11, 96), (48, 5, 256), (256, 3, 384), (192, 3, 384), (192, 3, 256)]
    assert grouped.count_params() == sum(k * k * cin * f + f for cin, k, f in convs) == 2_334_080
    assert tuple(grouped.output.shape[1:]) == (4, 4, 256)
    full = entry("alexnet_gru_va").builder(**entry("alexnet_gru_va").options(backbone_options={"groups": 1}))
    default = entry("alexnet_gru_va").builder(**entry("alexnet_gru_va").options())
    assert full.count_params() - default.count_params() == 1_413_120
    names = lambda m: {layer.name for layer in m.get_layer("frame_cnn").layer.layers}  # noqa: E731
    no_lrn = _small("alexnet_gru_va", backbone_options={"groups": 2, "lrn": False})
    assert "norm1" not in names(no_lrn) and "norm1" in names(_small("alexnet_gru_va"))
    stem = _small("bn_inception_au", backbone_options={"separable_stem": False})
    assert stem.count_params() != _small("bn_inception_au").count_params()
    for bad in ({"grups": 2}, {"groups": 3}):
        try:
            _small("alexnet_gru_va", backbone_options=bad)
        except ValueError as err:
            assert "grups" in str(err) or "groups must be 1" in str(err)
        else:
            raise AssertionError(f"{bad} accepted")


def test_thesis003_default_heads_follow_its_tables():
    """Tables 5.3/5.6 score 3FC higher for the combined VGG16 and Xception, Table 5.1 1FC for VGG19."""
    heads = {name: entry(name).options()["head_units"] for name in
             ("vgg16_lstm_combined", "xception_lstm_combined", "vgg19_lstm_category", "vgg16_lstm_category",
              "vgg19_lstm_va", "vgg19_lstm_combined")}
    assert heads == {"vgg16_lstm_combined": (128, 128), "xception_lstm_combined": (128, 128),
                     "vgg19_lstm_category": (), "vgg16_lstm_category": (64,), "vgg19_lstm_va": (128,),
                     "vgg19_lstm_combined": ()}
    model = _small("vgg16_lstm_combined")
    dense = {layer.name: layer.units for layer in model.layers if type(layer).__name__ == "Dense"}
    assert dense == {"category_fc1": 128, "category_fc2": 128, "category": 7, "va_fc1": 128, "va_fc2": 128, "va": 2}


def test_gru_form_output_and_head_activations_are_options():
    tf1 = _small("vgg16_gru_va", reset_after=False, va_activation="tanh")
    keras_form = _small("vgg16_gru_va")
    gru = [layer for layer in tf1.layers if type(layer).__name__ == "GRU"]
    assert gru and not any(layer.reset_after for layer in gru)
    assert all(layer.reset_after for layer in keras_form.layers if type(layer).__name__ == "GRU")
    # reset_after=True keeps two bias vectors per gate: 3 * units more parameters per GRU layer
    assert keras_form.count_params() - tf1.count_params() == sum(3 * layer.units for layer in gru)
    assert tf1.get_layer("va").activation.__name__ == "tanh"
    head = _small("vgg16_lstm_combined", head_activation="elu")
    assert head.get_layer("category_fc1").activation.__name__ == "elu"


def test_thesis001_search_is_its_lr_and_n_by_l_grid():
    """§4.2/§6.3: LR 1e-4/1e-5/1e-6 and n {2, 4, 6} x l {60, 80, 100}, all choices (a grid of 27),
    defaulting to what the thesis kept (1e-5, n = 4, l = 80); n and l go to data.pipeline, l to the
    model too."""
    import keras_tuner as kt
    from fer_keras.models.search_spaces import split

    for name in ("vgg16_gru_va", "resnet50_gru_va", "alexnet_gru_va"):
        hp = kt.HyperParameters()
        options, compile_args, pipeline = split(entry(name).space(hp))
        values = {h.name: tuple(h.values) for h in hp.space}
        assert values == {"learning_rate": (1e-4, 1e-5, 1e-6), "batch_size": (2, 4, 6), "seq_len": (60, 80, 100)}
        assert np.prod([len(v) for v in values.values()]) == 27
        assert (options, compile_args, pipeline) == ({"seq_len": 80}, {"learning_rate": 1e-5},
                                                      {"batch_size": 4, "seq_len": 80})
        # an experiment's own seq_len wins over the draw, for the model and the data alike
        options, _, pipeline = split(entry(name).space(hp), {"seq_len": 5, "units": 8})
        assert options == {"seq_len": 5, "units": 8} and pipeline == {"batch_size": 4, "seq_len": 5}


def test_thesis003_search_draws_one_dropout_for_every_dropout_and_its_training_settings():
    import keras_tuner as kt
    from fer_keras.models.search_spaces import split

    hp = kt.HyperParameters()
    hp.Fixed("dropout", 0.7)
    hp.Fixed("head_layers", 2)
    options, compile_args, pipeline = split(entry("vgg16_lstm_combined").space(hp))
    names = {h.name for h in hp.space}
    assert {"batch_size", "seq_len", "lr_decay", "learning_rate", "dropout"} <= names
    assert [h.values for h in hp.space if h.name == "seq_len"] == [[60, 80]]
    batch = next(h for h in hp.space if h.name == "batch_size")
    assert (batch.min_value, batch.max_value) == (1, 4)
    assert compile_args == {"learning_rate": 1e-5, "lr_decay": 1e-4} and pipeline == {"batch_size": 2, "seq_len": 60}
    model = _small("vgg16_lstm_combined", **{**options, "seq_len": 3})
    rates = {layer.name: layer.rate for layer in model.layers if layer.__class__.__name__ == "Dropout"}
    assert len(rates) == 1 + 2 * 2  # after the LSTM, after each of the 2 hidden FC of both heads
    assert set(rates.values()) == {0.7}


def test_vgg16_same_pooling_at_112_gives_thesis001s_4x4x512():
    """Thesis 001 prints 4x4x512 after VGG16's convolutions: SAME-padded pooling at 112 gives it, the
    application's VALID pooling gives 3x3 (at 96 both do); the layers and their weights are the same."""
    from fer_keras.models.backbones import build_backbone

    def side(size, padding):
        cnn = build_backbone("vgg16", input_size=size, options={"pool_padding": padding}) \
            if padding else build_backbone("vgg16", input_size=size)
        return cnn.get_layer("block5_pool").output.shape[1:], len(cnn.weights), cnn.count_params()
    same112, valid112, same96 = side(112, "same"), side(112, None), side(96, "same")
    assert same112[0] == (4, 4, 512) and valid112[0] == (3, 3, 512) and same96[0] == (3, 3, 512)
    assert same112[1:] == valid112[1:] == (26, 14_714_688)
    model = _small("vgg16_gru_va", input_size=112, backbone_options={"pool_padding": "same"})
    assert model.get_layer("frame_cnn").layer.output.shape[1:] == (4 * 4 * 512,)
    assert model.count_params() == 35_315_266 + 4096 * (4 * 4 - 3 * 3) * 512  # fc 4096 on 8,192 inputs
    import pytest
    with pytest.raises(ValueError, match="pool_padding"):
        build_backbone("vgg16", input_size=32, options={"pool_padding": "full"})


def _write_keras2(path, layers):
    """A Keras 2 weights file (top-level layer_names, weight_names per layer), as keras.applications ships."""
    import h5py
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        for name, arrays in layers.items():
            group = f.create_group(name)
            names = [f"{name}/{w}:0".encode() for w in ("kernel", "bias")[:len(arrays)]]
            group.attrs["weight_names"] = np.array(names)
            for w, a in zip(names, arrays):
                group.create_dataset(w.decode(), data=a)


def test_thesis004_fc6_fc7_start_from_the_imagenet_top(tmp_path):
    """top_weights: the ImageNet VGG16 file with its top (Keras' fc1, fc2) starts fc6 and fc7 and
    nothing else; a file without them, or with other shapes, is refused naming it."""
    import pytest
    rng = np.random.default_rng(0)
    fc1 = [rng.normal(size=(512, 32)).astype("float32"), rng.normal(size=32).astype("float32")]
    fc2 = [rng.normal(size=(32, 32)).astype("float32"), rng.normal(size=32).astype("float32")]
    conv = [np.ones((3, 3, 3, 64), "float32"), np.ones(64, "float32")]
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    _write_keras2(path, {"block1_conv1": conv, "fc1": fc1, "fc2": fc2,
                         "predictions": [np.zeros((32, 1000), "float32"), np.zeros(1000, "float32")]})
    model = _small("vgg16_au", top_weights=str(path))
    for name, arrays in (("fc6", fc1), ("fc7", fc2)):
        for got, want in zip(model.get_layer(name).get_weights(), arrays):
            np.testing.assert_array_equal(got, want)
    assert not np.all(model.get_layer("block1_conv1").get_weights()[0] == 1)  # convolutions untouched
    _write_keras2(tmp_path / "notop.h5", {"block1_conv1": conv})
    with pytest.raises(ValueError, match=r"notop\.h5: holds no layer for the hidden layer\(s\) fc6, fc7"):
        _small("vgg16_au", top_weights=str(tmp_path / "notop.h5"))
    with pytest.raises(ValueError, match=r"kernels\.h5: layer 'fc1' holds weights of shapes"):
        _small("vgg16_au", top_weights=str(path), input_size=64)


def test_frozen_batchnorm_in_inference_or_batch_mode():
    """A frozen backbone's BatchNorm keeps its moving statistics (inference, Keras) or normalises with
    the batch's and updates them, its scale and offset fixed (batch); frozen kernels never move."""
    import keras
    import pytest
    x = {"image": np.random.default_rng(1).normal(3.0, 2.0, size=(4, 32, 32, 3)).astype("float32")}
    y = {"category": keras.utils.to_categorical([0, 1, 2, 3], 7)}
    moved = {}
    for mode in ("inference", "batch"):
        model = _small("resnet50_finetune", trainable=0, frozen_batchnorm=mode)
        bn = model.get_layer("conv1_bn")
        before = [w.numpy().copy() for w in bn.weights]
        kernel = model.get_layer("conv1_conv").kernel.numpy().copy()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
        model.fit(x, y, epochs=1, verbose=0)
        after = dict(zip(("gamma", "beta", "moving_mean", "moving_variance"), (w.numpy() for w in bn.weights)))
        np.testing.assert_array_equal(after["gamma"], before[0])
        np.testing.assert_array_equal(after["beta"], before[1])
        np.testing.assert_array_equal(model.get_layer("conv1_conv").kernel.numpy(), kernel)
        moved[mode] = float(np.abs(after["moving_mean"] - before[2]).max())
        assert not any("conv1_bn" in v.path for v in model.trainable_weights)
    assert moved["inference"] == 0.0 and moved["batch"] > 1e-4
    with pytest.raises(ValueError, match="frozen_batchnorm"):
        _small("resnet50_finetune", frozen_batchnorm="train")
