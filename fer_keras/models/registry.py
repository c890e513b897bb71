"""The registry: every model of the five theses by name, with the thesis row it reproduces,
its defaults, a small test configuration and its KerasTuner search space.
"""
import inspect
from dataclasses import dataclass, field
from typing import Callable

from fer_keras.models import c3d, cascade, classifier, convlstm, fusion, search_spaces as ss, sequence


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable
    defaults: dict
    thesis: str
    summary: str
    space: Callable            # hp -> options (plus learning_rate / optimizer for compiling)
    small: dict = field(default_factory=dict)   # options for a fast build in tests

    def options(self, **overrides):
        """Builder defaults, then the entry's, then ``overrides``; unknown keys are an error."""
        params = inspect.signature(self.builder).parameters
        unknown = sorted(set(overrides) - set(params))
        if unknown:
            raise ValueError(f"model {self.name!r}: unknown option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(params))}")
        base = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
        return {**base, **self.defaults, **overrides}

    def output_shapes(self, **overrides):
        """The documented output shapes, as {output name: shape with None for the batch}."""
        opts = self.options(**overrides)
        sizes = {"category": opts.get("classes"), "va": 2, "au": opts.get("num_aus")}
        framewise = opts.get("temporal") == "frame" or opts.get("classify") == "frame"
        return {task: (None, opts["seq_len"], sizes[task]) if framewise else (None, sizes[task])
                for task in opts.get("tasks", ("category",))}


REGISTRY: dict[str, Entry] = {}


def register(name, builder, thesis, summary, space, small=None, **defaults):
    if name in REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    REGISTRY[name] = Entry(name, builder, {"name": name, **defaults}, thesis, summary, space, small or {})


# --- thesis 000: AFEW, audio-visual --------------------------------------------------------
# Backbone, its thesis-000 feature and the Stage-1 best global_pool (§6.1).
T000_BACKBONES = {
    "vggface": dict(backbone="vggface_vgg16", feature="fc6"),
    "resnet50": dict(backbone="resnet50", global_pool=False),
    "densenet121": dict(backbone="densenet121", global_pool=True),
    "se_resnet50": dict(backbone="se_resnet50", global_pool=False),
    "se_resnext50": dict(backbone="se_resnext50", global_pool=True),
    "nasnet_mobile": dict(backbone="nasnet_mobile", global_pool=True),
}
T000_SMALL = dict(input_size=32, seq_len=3)
for short, bk in T000_BACKBONES.items():
    head = dict(feature="fc7") if short == "vggface" else {}
    register(f"{short}_frames", sequence.sequence_model, "000 §3.2 / §6.2 Fine-Tuning Visual",
             f"{bk['backbone']} classifies each frame; logits reduced over the valid frames (option classify: all steps, or per frame)",
             ss.thesis000_visual, T000_SMALL, **{**bk, **head}, rnn=None, input_size=112, seq_len=80)
    for variant, opts in {"gru": {}, "bgru": dict(bidirectional=True), "gru_att": dict(attention=True),
                          "bgru_att": dict(bidirectional=True, attention=True)}.items():
        register(f"{short}_{variant}", sequence.sequence_model, "000 §3.3 / §6.3 Temporal Visual",
                 f"{bk['backbone']} per frame -> 2x{variant.upper()}(128) -> per-frame logits -> masked mean",
                 ss.thesis000_visual, T000_SMALL, **bk, **opts, input_size=112, seq_len=40)
register("audio_ffn", classifier.vector_classifier, "000 §3.4 / §6.4 Audio (whole video)",
         "z-scored openSMILE functionals -> Dense(1024) -> dropout 0.5 -> softmax 7",
         ss.thesis000_audio_ffn, dict(input_dim=16), input_dim=1582, standardize=True)
register("audio_gru", sequence.sequence_model, "000 §3.4 / §6.4 Audio Run Six",
         "z-scored per-clip LLDs -> 4xGRU(64) + attention -> per-frame logits -> masked mean",
         ss.thesis000_audio_gru, dict(seq_len=5), input_dim=25, input_name="lld", units=64,
         rnn_layers=4, attention=True, seq_len=80, standardize=True)
for option in (1, 2, 3, 4):
    register(f"early_fusion_{option}", fusion.early_fusion, f"000 §3.5 / §6.5 Early Fusion option {option}",
             "VGGFace fc6 per frame fused with z-scored audio LLDs per 40 ms clip", ss.thesis000_fusion,
             dict(input_size=32, seq_len=3), option=option, input_size=112, standardize=True)

# --- thesis 001: 4K valence/arousal -----------------------------------------------------------
T001_SMALL = dict(seq_len=3)
register("vgg16_gru_va", sequence.sequence_model, "001 §3.3 VGG16-GRU",
         "VGG16 conv (3x3x512 at 96; the thesis's 4x4x512 at 112 with backbone_options {pool_padding: same})"
         " -> FC 4096 -> 2xGRU(128) -> per-frame valence, arousal",
         ss.thesis001, dict(T001_SMALL, input_size=32), backbone="vgg16", fc=(4096,), tasks=("va",),
         temporal="frame", input_size=96, seq_len=80)
register("resnet50_gru_va", sequence.sequence_model, "001 §3.4 ResNet-GRU",
         "ResNet-50 (classifier removed) -> 2xGRU(128) -> per-frame valence, arousal",
         ss.thesis001, dict(T001_SMALL, input_size=32), backbone="resnet50", global_pool=True,
         tasks=("va",), temporal="frame", input_size=96, seq_len=80)
register("alexnet_gru_va", sequence.sequence_model, "001 §3.1 AlexNet-GRU",
         "AlexNet conv (4x4x256 at 96, two filter groups) -> 2 FC -> 2xGRU(128) -> per-frame valence, arousal",
         ss.thesis001, dict(T001_SMALL, fc=(64, 64)), backbone="alexnet", fc=(4096, 4096),
         backbone_options={"groups": 2}, tasks=("va",), temporal="frame", input_size=96, seq_len=80)

# --- thesis 002: BU-4DFE ----------------------------------------------------------------------
register("vggface_finetune", classifier.image_classifier, "002 §3.2 Table 3.4 VGGFace",
         "VGGFace conv -> Flatten -> Dense 1024 'dense' -> Dense 1024 -> softmax 7; blocks 4-5 trainable",
         ss.thesis002_finetune, dict(input_size=32), backbone="vggface_vgg16", hidden=(1024, 1024),
         hidden_names=("dense", "dense_1"), trainable=2, input_size=224)
register("vgg16_finetune", classifier.image_classifier, "002 §3.2 Table 3.4 VGG16",
         "VGG16 conv -> Flatten -> Dense 1024 -> softmax 7; blocks 4-5 trainable",
         ss.thesis002_finetune, dict(input_size=32), backbone="vgg16", hidden=(1024,),
         hidden_names=("dense",), trainable=2, input_size=224)
register("resnet50_finetune", classifier.image_classifier, "002 §3.2 Table 3.4 ResNet50",
         "ResNet50 -> global average pool -> Dense 1024 -> softmax 7; stages conv4-5 trainable",
         ss.thesis002_finetune, dict(input_size=32), backbone="resnet50", global_pool=True,
         hidden=(1024,), hidden_names=("dense",), trainable=2, input_size=224)
CASCADE_SMALL = dict(input_dim=16, seq_len=6)
register("cascade_lstm", sequence.sequence_model, "002 §3.3 VGGFace + LSTM",
         "cached VGGFace features (100x25088) + mask -> LSTM(128, dropout 0.4) -> softmax 6",
         ss.thesis002_cascade, CASCADE_SMALL, input_dim=25088, seq_len=100, rnn="lstm",
         rnn_layers=1, rnn_dropout=0.4, temporal="last", classes=6)
register("cascade_bilstm", sequence.sequence_model, "002 §3.3 VGGFace + BiLSTM",
         "cached VGGFace features + mask -> BiLSTM(128, dropout 0.7) -> softmax 6",
         ss.thesis002_cascade, CASCADE_SMALL, input_dim=25088, seq_len=100, rnn="lstm",
         rnn_layers=1, bidirectional=True, rnn_dropout=0.7, temporal="last", classes=6)
register("cascade_cnn1d", cascade.cnn1d, "002 §3.3 VGGFace + 1D-CNN",
         "cached VGGFace features + mask -> 4 Conv1D, 2 MaxPooling1D -> Dense -> softmax 6",
         ss.thesis002_cnn1d, dict(input_dim=16, seq_len=8), classes=6)
register("c3d", c3d.c3d, "002 §3.4 C3D baseline", "3x Conv3D/MaxPooling3D -> Dense 512, 512 -> softmax 6",
         ss.thesis002_c3d, dict(seq_len=22, input_size=22), classes=6)
register("convlstm", convlstm.convlstm, "002 §3.5 ConvLSTM", "2x ConvLSTM2D(8) -> Flatten -> softmax 6",
         ss.thesis002_convlstm, dict(seq_len=3, input_size=8), classes=6)

# --- thesis 003: categories + valence/arousal -------------------------------------------------
# The higher-scoring head per backbone and task, as the tables score them (§3.3 reads the second
# "VGG-16" as VGG-19): category-only Table 5.1 (VGG16 2FC 0.47 > 0.35, VGG19 1FC 0.51 > 0.19,
# Xception 2FC 0.34 > 0.32), VA-only Table 5.2 (2FC for all three), combined Tables 5.3 and 5.6
# (VGG16 3FC 0.57 > 0.54, VGG19 1FC 0.59 > 0.53, Xception 3FC 0.51 > 0.43).
T003_HEADS = {
    ("vgg16", "category"): (64,), ("vgg19", "category"): (), ("xception", "category"): (128,),
    ("vgg16", "va"): (64,), ("vgg19", "va"): (128,), ("xception", "va"): (128,),
    ("vgg16", "combined"): (128, 128), ("vgg19", "combined"): (), ("xception", "combined"): (128, 128),
}
for (bk, task), head_units in T003_HEADS.items():
    tasks = ("category", "va") if task == "combined" else (task,)
    register(f"{bk}_lstm_{task}", sequence.sequence_model, f"003 §4.4 {bk.upper()}+LSTM {task}",
             f"frozen ImageNet {bk} conv -> LSTM(128) -> dropout 0.5 -> per-frame {'+'.join(tasks)}"
             f" heads {head_units or '1FC'}", ss.thesis003,
             dict(seq_len=3, input_size=72 if bk == "xception" else 32), backbone=bk, trainable=0,
             rnn="lstm", rnn_layers=1, dropout=0.5, head_units=head_units, head_dropout=0.5,
             tasks=tasks, temporal="frame", input_size=72, seq_len=60)

# --- thesis 004: EmotioNet action units, valence/arousal on stills ---------------------------
for bk, opts in {"vgg16": dict(hidden=(4096, 4096), hidden_names=("fc6", "fc7"), trainable=0),
                 "bn_inception": dict(global_pool=True, hidden=(), feature_dropout=0.2, trainable=0)}.items():
    small = dict(input_size=32 if bk == "vgg16" else 64, **({"hidden": (32, 32)} if bk == "vgg16" else {}))
    register(f"{bk}_au", classifier.image_classifier, f"004 §4.3 {bk} AU detection",
             f"{bk} -> sigmoid per AU (11 by default; 60 in §4.2); only the head trains; L2 4e-5",
             ss.thesis004, small, backbone=bk, **opts, tasks=("au",), num_aus=11, input_size=224,
             weight_decay=4e-5)
    register(f"{bk}_va", classifier.image_classifier, f"004 §5 {bk} valence/arousal",
             f"{bk} -> linear valence, arousal; only the head trains; L2 4e-5", ss.thesis004, small,
             backbone=bk, **opts, tasks=("va",), input_size=224, weight_decay=4e-5)
