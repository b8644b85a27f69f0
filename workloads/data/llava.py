"""LLaVA-format data: a JSON list of ``{"image": path, "conversations": [{"from", "value"}, …]}``.

Each human→gpt turn pair becomes one sample (one question per image, as QueCC conditions on a
single question); the ``<image>`` marker is stripped from the question because the collator
places the visual tokens itself. Images load lazily with Pillow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .synthetic import Sample, Turn


class LlavaFormatError(ValueError):
    pass


class LlavaDataset:
    def __init__(self, json_path: str | Path, image_root: str | Path | None = None, task: str = "llava"):
        path = Path(json_path)
        if not path.is_file():
            raise LlavaFormatError(f"{path}: no such LLaVA-format JSON file")
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise LlavaFormatError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(records, list):
            raise LlavaFormatError(f"{path}: expected a JSON list of records")
        root = Path(image_root) if image_root else path.parent
        self.task = task
        self.items: list[tuple[Path, str, str]] = []
        for i, rec in enumerate(records):
            where = f"{path}: record {i}"
            if not isinstance(rec, dict) or "image" not in rec or "conversations" not in rec:
                raise LlavaFormatError(f"{where}: needs 'image' and 'conversations'")
            turns = rec["conversations"]
            image = root / rec["image"]
            for j in range(0, len(turns) - 1, 2):
                human, gpt = turns[j], turns[j + 1]
                if human.get("from") != "human" or gpt.get("from") != "gpt":
                    raise LlavaFormatError(f"{where}: turns {j}, {j + 1} must be human then gpt")
                question = " ".join(human["value"].replace("<image>", " ").split())
                self.items.append((image, question, gpt["value"].strip()))
        if not self.items:
            raise LlavaFormatError(f"{path}: no human/gpt turn pairs found")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        from PIL import Image

        image_path, question, answer = self.items[index]
        try:
            with Image.open(image_path) as im:
                image = np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise LlavaFormatError(f"image {image_path} (record item {index}) does not exist") from None
        return Sample(image, (Turn(question, answer, self.task),), self.task)
