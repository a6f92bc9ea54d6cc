"""CycleGAN's image pool (Shrivastava et al. 2017): the discriminator also sees older fakes, which damps oscillation."""

from __future__ import annotations

import torch


class ImagePool:
    """Up to `size` past generated images. Each new image goes in while there is room; after that,
    with probability 1/2 it replaces a random stored one, which is returned in its place."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []  # each (1, C, H, W)

    def query(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(N, C, H, W) new fakes (detached) -> (N, C, H, W) for the discriminator."""
        if self.size == 0:
            return images
        chosen = []
        for image in images.split(1):
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif float(torch.rand((), generator=generator)) < 0.5:
                index = int(torch.randint(self.size, (), generator=generator))
                chosen.append(self.images[index])
                self.images[index] = image.clone()
            else:
                chosen.append(image)
        return torch.cat(chosen)

    def state(self) -> torch.Tensor:
        """The stored images as one (M, C, H, W) tensor, M <= size (empty: shape (0,))."""
        return torch.cat(self.images) if self.images else torch.zeros(0)

    def restore(self, stored: torch.Tensor) -> None:
        self.images = list(stored.split(1)) if stored.numel() else []
