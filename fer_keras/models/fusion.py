"""Thesis 000's early (feature-level) fusion, options 1-4 of §3.5 (Fig. 6.13 a-d).

Fusion is per-frame concatenation, no learned fusion weights:
1. CNN feature + raw openSMILE LLDs -> GRU;
2. CNN feature + audio-GRU states -> new GRU (the thesis's best);
3. CNN feature + audio-GRU states -> fully connected layer;
4. visual CNN+GRU states + audio-GRU states -> new GRU (balances the two widths).
All end in per-frame logits pooled over valid frames ("Reduce Mean"). Sequence length 80.
"""
import keras
from keras import layers

from fer_keras.models.backbones import default_size
from fer_keras.models.layers import AsMask, standardized
from fer_keras.models.sequence import dense_stack, frame_features, rnn_stack, task_heads


def early_fusion(*, option=2, backbone="vggface_vgg16", input_size=None, weights=None,
                 global_pool=False, feature="fc6", skip_mismatch=False, trainable="all", lld_dim=25,
                 seq_len=80, audio_units=64, audio_layers=4, audio_attention=True, visual_units=128,
                 visual_layers=2, visual_bidirectional=True, units=128, rnn_layers=2,
                 bidirectional=False, fc=(), classes=7, temporal="mean", standardize=False, name=None):
    """Inputs ``frames`` (B, T, H, W, 3), ``lld`` (B, T, D) and ``mask`` (B, T); output ``category``.
    ``standardize`` z-scores the LLDs with training-split statistics (layers.Standardize)."""
    if option not in (1, 2, 3, 4):
        raise ValueError(f"early fusion option must be 1, 2, 3 or 4 (thesis 000 §3.5), got {option!r}")
    size = input_size or default_size(backbone)
    frames = keras.Input((seq_len, size, size, 3), name="frames")
    lld = keras.Input((seq_len, lld_dim), name="lld")
    mask_in = keras.Input((seq_len,), name="mask")
    mask = AsMask(name="as_mask")(mask_in)
    visual = frame_features(frames, mask, backbone=backbone, input_size=size, weights=weights,
                            global_pool=global_pool, feature=feature, skip_mismatch=skip_mismatch,
                            trainable=trainable)
    if option == 4:
        visual = rnn_stack(visual, mask, units=visual_units, depth=visual_layers,
                           bidirectional=visual_bidirectional, prefix="visual_gru")
    audio = standardized(lld, standardize, "lld")
    if option != 1:
        audio = rnn_stack(audio, mask, units=audio_units, depth=audio_layers, attention=audio_attention,
                          prefix="audio_gru")
    x = layers.Concatenate(name="fusion_concat")([visual, audio])
    if option == 3:
        x = dense_stack(x, fc, prefix="fusion_fc")
    else:
        x = rnn_stack(x, mask, units=units, depth=rnn_layers, bidirectional=bidirectional,
                      prefix="fusion_gru")
    outputs = task_heads(x, mask, tasks=("category",), classes=classes, temporal=temporal)
    return keras.Model({"frames": frames, "lld": lld, "mask": mask_in}, outputs,
                       name=name or f"early_fusion_{option}")
