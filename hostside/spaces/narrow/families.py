"""The five narrow families and their reference models.

Each ``build`` writes the reference topology with the variables in place of its constants;
downsampling (pooling, stride 2) is skipped once a feature map is 1x1, so any input of at least
1x1 decodes. References (for a CIFAR-sized input; other inputs keep the same topology):

- ``plain``: the repository's digits CNN (``hostside.arch.examples.digits_small_cnn``): conv-BN-ReLU
  layers with a max-pool after every second and after the last, dropout and a linear classifier.
- ``resnet``: ResNet-20 (He et al. 2016, CIFAR): a 3x3 stem, three stages of three basic blocks of
  16/32/64 channels, stride 2 at stages 2 and 3, 1x1 projection shortcuts where the shape changes.
- ``inception``: the small Inception of Zhang et al. (2017) for CIFAR: 96-channel stem, modules
  concatenating a 1x1 and a 3x3 branch, downsampling modules concatenating a stride-2 3x3 conv
  and a 3x3 max-pool.
- ``densenet``: DenseNet-40 with growth rate 12 (Huang et al. 2017): 16-channel stem, three dense
  blocks of 12 BN-ReLU-conv layers, BN-ReLU-1x1 conv + 2x2 average-pool transitions.
- ``mobilenet``: MobileNetV2 (Sandler et al. 2018) with the usual CIFAR strides: inverted residual
  blocks (1x1 expansion by t, depthwise 3x3, linear 1x1 projection, residual when shapes match).
"""

from __future__ import annotations

from typing import Dict, Tuple, Type

from hostside.spaces.narrow.family import Config, NarrowSpace
from hostside.spaces.narrow.graph import Graph
from hostside.spaces.narrow.variables import choice, span


def _can_halve(h: int, w: int) -> bool:
    return h >= 2 and w >= 2


class PlainSpace(NarrowSpace):
    family = "plain"
    reference_name = "digits-small-cnn"
    MAX_DEPTH = 6
    VARIABLES = (
        span("depth", 1, MAX_DEPTH, 2, "conv-BN-ReLU layers"),
        *(span(f"width_{i}", 1, 128, (16, 32)[i - 1] if i <= 2 else 32, f"output channels of layer {i}")
          for i in range(1, MAX_DEPTH + 1)),
        *(choice(f"kernel_{i}", (1, 3, 5, 7), 3, f"kernel of layer {i}") for i in range(1, MAX_DEPTH + 1)),
    )

    def build(self, config: Config) -> Graph:
        g = Graph()
        src = "input"
        _, h, w = self.input_shape
        depth = config["depth"]
        for i in range(1, depth + 1):
            k = config[f"kernel_{i}"]
            conv = g.add("conv2d", [src], out_channels=config[f"width_{i}"], kernel=k, padding=k // 2)
            src = g.add("relu", [g.add("batchnorm", [conv])])
            if (i % 2 == 0 or i == depth) and _can_halve(h, w):
                src = g.add("maxpool", [src], kernel=2)
                h, w = h // 2, w // 2
        flat = g.add("flatten", [src])
        g.add("linear", [g.add("dropout", [flat], p=0.1)], out_features=self.num_classes)
        return g


class ResNetSpace(NarrowSpace):
    family = "resnet"
    reference_name = "resnet-20"
    VARIABLES = (
        *(span(f"width_{s}", 1, 256, ref, f"channels of stage {s}") for s, ref in ((1, 16), (2, 32), (3, 64))),
        *(span(f"blocks_{s}", 1, 6, 3, f"basic blocks in stage {s}") for s in (1, 2, 3)),
        choice("kernel", (1, 3, 5), 3, "kernel of the block convolutions"),
    )

    def build(self, config: Config) -> Graph:
        g = Graph()
        k = config["kernel"]
        _, h, w = self.input_shape
        src = g.conv_bn_act("input", config["width_1"], 3)
        channels = config["width_1"]
        for s in (1, 2, 3):
            width = config[f"width_{s}"]
            for b in range(config[f"blocks_{s}"]):
                stride = 2 if s > 1 and b == 0 and _can_halve(h, w) else 1
                if stride == 2:
                    h, w = (h + 1) // 2, (w + 1) // 2
                body = g.conv_bn_act(src, width, k, stride=stride)
                body = g.conv_bn_act(body, width, k, act="identity")
                short = src
                if stride != 1 or channels != width:
                    short = g.conv_bn_act(src, width, 1, stride=stride, act="identity")
                src = g.add("relu", [g.add("add", [body, short])])
                channels = width
        g.head(src, self.num_classes)
        return g


class InceptionSpace(NarrowSpace):
    family = "inception"
    reference_name = "inception-small"
    #: Modules per stage in the reference and their (1x1, 3x3) widths.
    REFERENCE_MODULES = (((32, 32), (32, 48)), ((112, 48), (96, 64), (80, 80), (48, 96)), ((176, 160), (176, 160)))
    REFERENCE_DOWN = (80, 96)
    VARIABLES = (
        span("stem", 1, 192, 96, "channels of the 3x3 stem"),
        *(span(f"modules_{s}", 1, len(mods), len(mods), f"inception modules in stage {s}")
          for s, mods in enumerate(REFERENCE_MODULES, 1)),
        *(span(f"m{s}_{j}_{kind}", 1, 256, pair[t], f"{kind} branch of module {j} in stage {s}")
          for s, mods in enumerate(REFERENCE_MODULES, 1) for j, pair in enumerate(mods, 1)
          for t, kind in enumerate(("1x1", "3x3"))),
        *(span(f"down_{s}", 1, 256, ref, f"3x3 stride-2 branch of downsampling module {s}")
          for s, ref in enumerate(REFERENCE_DOWN, 1)),
    )

    def build(self, config: Config) -> Graph:
        g = Graph()
        _, h, w = self.input_shape
        src = g.conv_bn_act("input", config["stem"], 3)
        for s in (1, 2, 3):
            for j in range(1, config[f"modules_{s}"] + 1):
                one = g.conv_bn_act(src, config[f"m{s}_{j}_1x1"], 1)
                three = g.conv_bn_act(src, config[f"m{s}_{j}_3x3"], 3)
                src = g.add("concat", [one, three])
            if s < 3:
                stride = 2 if _can_halve(h, w) else 1
                if stride == 2:
                    h, w = (h + 1) // 2, (w + 1) // 2
                conv = g.conv_bn_act(src, config[f"down_{s}"], 3, stride=stride)
                pool = g.add("maxpool", [src], kernel=3, stride=stride, padding=1)
                src = g.add("concat", [conv, pool])
        g.head(src, self.num_classes)
        return g


class DenseNetSpace(NarrowSpace):
    family = "densenet"
    reference_name = "densenet-40-k12"
    VARIABLES = (
        span("stem", 1, 64, 16, "channels of the 3x3 stem"),
        span("growth", 1, 48, 12, "growth rate: channels each dense layer adds"),
        *(span(f"layers_{b}", 1, 16, 12, f"dense layers in block {b}") for b in (1, 2, 3)),
        choice("kernel", (1, 3, 5), 3, "kernel of the dense layers"),
    )

    def build(self, config: Config) -> Graph:
        g = Graph()
        _, h, w = self.input_shape
        src = g.add("conv2d", ["input"], out_channels=config["stem"], kernel=3, padding=1, bias=False)
        channels = config["stem"]
        for b in (1, 2, 3):
            for _ in range(config[f"layers_{b}"]):
                new = g.bn_act_conv(src, config["growth"], config["kernel"])
                src = g.add("concat", [src, new])
                channels += config["growth"]
            if b < 3:
                src = g.bn_act_conv(src, channels, 1)
                if _can_halve(h, w):
                    src = g.add("avgpool", [src], kernel=2)
                    h, w = h // 2, w // 2
        src = g.add("relu", [g.add("batchnorm", [src])])
        g.head(src, self.num_classes)
        return g


class MobileNetSpace(NarrowSpace):
    family = "mobilenet"
    reference_name = "mobilenet-v2-cifar"
    #: (expansion, channels, blocks, stride) per stage, as in MobileNetV2 with CIFAR strides.
    REFERENCE_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1))
    VARIABLES = (
        span("stem", 1, 64, 32, "channels of the 3x3 stem"),
        span("expansion", 1, 8, 6, "expansion factor t of the inverted residual blocks (stage 1 keeps t=1)"),
        *(span(f"width_{s}", 1, 2 * c, c, f"channels of stage {s}") for s, (_, c, _, _) in enumerate(REFERENCE_STAGES, 1)),
        *(span(f"blocks_{s}", 1, 4, n, f"blocks in stage {s}") for s, (_, _, n, _) in enumerate(REFERENCE_STAGES, 1)),
        choice("kernel", (3, 5), 3, "kernel of the depthwise convolutions"),
        span("last", 1, 1280, 1280, "channels of the final 1x1 convolution"),
    )

    def build(self, config: Config) -> Graph:
        g = Graph()
        _, h, w = self.input_shape
        k = config["kernel"]
        src = g.conv_bn_act("input", config["stem"], 3, act="relu6")
        channels = config["stem"]
        for s, (t_ref, _, _, stage_stride) in enumerate(self.REFERENCE_STAGES, 1):
            t = 1 if t_ref == 1 else config["expansion"]
            width = config[f"width_{s}"]
            for b in range(config[f"blocks_{s}"]):
                stride = 2 if stage_stride == 2 and b == 0 and _can_halve(h, w) else 1
                if stride == 2:
                    h, w = (h + 1) // 2, (w + 1) // 2
                hidden = channels * t
                x = src if t == 1 else g.conv_bn_act(src, hidden, 1, act="relu6")
                x = g.conv_bn_act(x, hidden, k, stride=stride, groups=hidden, act="relu6")
                x = g.conv_bn_act(x, width, 1, act="identity")
                src = g.add("add", [x, src]) if stride == 1 and channels == width else x
                channels = width
        src = g.conv_bn_act(src, config["last"], 1, act="relu6")
        g.head(src, self.num_classes)
        return g


FAMILIES: Dict[str, Type[NarrowSpace]] = {
    cls.family: cls for cls in (PlainSpace, ResNetSpace, InceptionSpace, DenseNetSpace, MobileNetSpace)
}
FAMILY_NAMES: Tuple[str, ...] = tuple(FAMILIES)
