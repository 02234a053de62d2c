"""Classic CNNs written as plain torch modules, the way their papers describe them.

They are the read-back's ground truth for ONNX files that our exporter did not write: each is
small enough to export in a fraction of a second but keeps the structure that matters to a
cost reader (depthwise and non-square kernels, concat branches, shortcuts, FC heads, batchnorms
that can and cannot be folded).
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import torch
from torch import nn


def conv_bn(cin: int, cout: int, kernel, stride=1, padding=0, groups: int = 1) -> nn.Sequential:
    """Conv (no bias, as the batchnorm supplies the shift) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class LeNet5(nn.Module):
    """LeCun et al. 1998 on 1x32x32: tanh, average pooling, three FC layers, no batchnorm."""

    input_shape = (1, 32, 32)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """He et al. 2016 basic block; a strided block projects the shortcut with 1x1 conv + BN."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """He et al. 2016 (identity mappings): BN -> ReLU -> conv; these batchnorms follow an
    addition or a ReLU, not a conv, so no exporter can fold them."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class CifarResNet(nn.Module):
    """ResNet-6n+2 for 3x32x32 (n=3: ResNet-20), widths 16/32/64 scaled by ``width``."""

    input_shape = (3, 32, 32)

    def __init__(self, n: int = 3, width: int = 16, preact: bool = False, num_classes: int = 10):
        super().__init__()
        block = PreActBlock if preact else BasicBlock
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.stem_bn = nn.Identity() if preact else nn.BatchNorm2d(width)
        blocks = []
        cin = width
        for stage in range(3):
            cout = width * 2 ** stage
            for i in range(n):
                blocks.append(block(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.final_bn = nn.BatchNorm2d(cin) if preact else nn.Identity()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem(x)))
        x = torch.relu(self.final_bn(self.blocks(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class MobileNetV1(nn.Module):
    """Howard et al. 2017: depthwise 3x3 + pointwise 1x1 pairs, width multiplier ``alpha``."""

    input_shape = (3, 32, 32)
    # (output channels, stride) of each depthwise-separable block.
    BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]

    def __init__(self, alpha: float = 0.25, num_classes: int = 10):
        super().__init__()
        cin = int(32 * alpha)
        layers = [conv_bn(3, cin, 3, 2, 1)]
        for channels, stride in self.BLOCKS:
            cout = int(channels * alpha)
            layers += [conv_bn(cin, cin, 3, stride, 1, groups=cin), conv_bn(cin, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class DSCNN(nn.Module):
    """Zhang et al. 2017 (Hello Edge) DS-CNN-S for keyword spotting on 49x10 MFCC frames:
    a 10x4 stride-2 first conv (non-square kernel and padding), four depthwise-separable
    blocks, average pooling over the remaining 25x5 map."""

    input_shape = (1, 49, 10)

    def __init__(self, channels: int = 64, num_classes: int = 12):
        super().__init__()
        layers = [conv_bn(1, channels, (10, 4), (2, 2), (5, 1))]
        for _ in range(4):
            layers += [conv_bn(channels, channels, 3, 1, 1, groups=channels), conv_bn(channels, channels, 1)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d((25, 5))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class Inception(nn.Module):
    """Szegedy et al. 2015 block (with the batchnorms of Inception v2): four branches
    concatenated along channels."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int):
        super().__init__()
        self.b1 = conv_bn(cin, c1, 1)
        self.b3 = nn.Sequential(conv_bn(cin, c3r, 1), conv_bn(c3r, c3, 3, padding=1))
        self.b5 = nn.Sequential(conv_bn(cin, c5r, 1), conv_bn(c5r, c5, 5, padding=2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(cin, pool_proj, 1))
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class InceptionNet(nn.Module):
    """A stem and two inception blocks on 3x32x32, global pooling, one FC layer."""

    input_shape = (3, 32, 32)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = conv_bn(3, 32, 3, padding=1)
        self.block1 = Inception(32, 16, 16, 24, 4, 8, 8)
        self.pool = nn.MaxPool2d(2)
        self.block2 = Inception(self.block1.out_channels, 24, 16, 32, 8, 16, 16)
        self.fc = nn.Linear(self.block2.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.pool(self.block1(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class VGG(nn.Module):
    """Simonyan & Zisserman 2015 style, small: 3x3 conv+BN stacks between max pools and a
    three-layer FC head with dropout; ``head_bn`` adds BatchNorm1d after the hidden FC
    layers (as VGG-BN variants for CIFAR do), which only the dynamo exporter folds."""

    input_shape = (3, 32, 32)

    def __init__(self, config: Sequence = (16, "M", 32, 32, "M", 64, 64, "M"), hidden: int = 64,
                 head_bn: bool = False, num_classes: int = 10):
        super().__init__()
        layers = []
        cin = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(conv_bn(cin, item, 3, padding=1))
                cin = item
        self.features = nn.Sequential(*layers)

        def hidden_layer(fin: int) -> list:
            return [nn.Linear(fin, hidden)] + ([nn.BatchNorm1d(hidden)] if head_bn else []) + [
                nn.ReLU(inplace=True), nn.Dropout(0.5)]

        self.classifier = nn.Sequential(
            nn.Flatten(), *hidden_layer(cin * 4 * 4), *hidden_layer(hidden), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


ZOO: Dict[str, Tuple[Callable[[], nn.Module], Tuple[int, int, int]]] = {
    "lenet5": (LeNet5, LeNet5.input_shape),
    "resnet20": (lambda: CifarResNet(n=3), CifarResNet.input_shape),
    "preact_resnet8": (lambda: CifarResNet(n=1, preact=True), CifarResNet.input_shape),
    "mobilenet_v1_025": (MobileNetV1, MobileNetV1.input_shape),
    "ds_cnn": (DSCNN, DSCNN.input_shape),
    "inception": (InceptionNet, InceptionNet.input_shape),
    "vgg": (VGG, VGG.input_shape),
    "vgg_head_bn": (lambda: VGG(head_bn=True), VGG.input_shape),
}


def make(name: str, seed: int = 0) -> nn.Module:
    """The named net in eval mode with seeded weights and batchnorm statistics that look
    trained (no two batchnorms equal, none an identity)."""
    factory, _ = ZOO[name]
    torch.manual_seed(seed)
    net = factory()
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            c = module.num_features
            module.weight.data = torch.rand(c, generator=generator) + 0.5
            module.bias.data = torch.rand(c, generator=generator) - 0.5
            module.running_mean = torch.rand(c, generator=generator) - 0.5
            module.running_var = torch.rand(c, generator=generator) + 0.5
    return net.eval()
