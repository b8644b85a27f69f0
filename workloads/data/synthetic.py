"""Procedurally generated visual question answering, deterministic per (seed, split, index).

Two tasks stand in for the study's two benchmark regimes:

* ``shapes`` — visual reasoning over a scene of coloured shapes on a ``cells``×``cells`` grid:
  counting, colour, position and existence questions. Coarse, whole-scene information answers
  most of it, so few visual tokens go a long way (the study's finding for reasoning benchmarks).
* ``text`` — letters rendered into grid cells with a built-in 5×7 bitmap font: what letter is
  where, what a row says, where a letter is. Every cell's fine detail matters, so visual tokens
  matter more (the study's OCR regime).
* ``reason`` — the ``shapes`` scenes, with questions that combine what is seen: compare two
  counts, add them, subtract one from the total, find the most common colour. The visual content
  needed is small (how many of each colour and shape: a histogram, which even one pooled token
  carries), the computation over it is not, so the LLM's size matters more than the visual
  tokens — the study's reasoning regime, where the frontier spends compute on parameters.

Samples are generated on demand from ``numpy.random.default_rng([seed, split, index])``: random
access, nothing materialised, identical on every machine, and a resumed run sees exactly the data
an uninterrupted one would. Scenes are aligned with the grid so that a patch never straddles two
objects, which is what lets a from-scratch tiny ViT learn from pixels within a CPU minute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (60, 100, 250),
    "yellow": (240, 220, 40),
}
NUMBERS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
TASKS = ("shapes", "text", "reason")
SCENES = ("shapes", "text")  # the scene kinds (reason asks about shapes scenes)
SPLITS = {"train": 0, "eval": 1}

_FONT_5X7 = {
    "a": "01110 10001 10001 11111 10001 10001 10001", "b": "11110 10001 10001 11110 10001 10001 11110",
    "c": "01110 10001 10000 10000 10000 10001 01110", "d": "11110 10001 10001 10001 10001 10001 11110",
    "e": "11111 10000 10000 11110 10000 10000 11111", "f": "11111 10000 10000 11110 10000 10000 10000",
    "g": "01110 10001 10000 10111 10001 10001 01111", "h": "10001 10001 10001 11111 10001 10001 10001",
    "i": "01110 00100 00100 00100 00100 00100 01110", "j": "00111 00010 00010 00010 00010 10010 01100",
    "k": "10001 10010 10100 11000 10100 10010 10001", "l": "10000 10000 10000 10000 10000 10000 11111",
    "m": "10001 11011 10101 10101 10001 10001 10001", "n": "10001 10001 11001 10101 10011 10001 10001",
    "o": "01110 10001 10001 10001 10001 10001 01110", "p": "11110 10001 10001 11110 10000 10000 10000",
    "q": "01110 10001 10001 10001 10101 10010 01101", "r": "11110 10001 10001 11110 10100 10010 10001",
    "s": "01111 10000 10000 01110 00001 00001 11110", "t": "11111 00100 00100 00100 00100 00100 00100",
    "u": "10001 10001 10001 10001 10001 10001 01110", "v": "10001 10001 10001 10001 10001 01010 00100",
    "w": "10001 10001 10001 10101 10101 10101 01010", "x": "10001 10001 01010 00100 01010 10001 10001",
    "y": "10001 10001 01010 00100 00100 00100 00100", "z": "11111 00001 00010 00100 01000 10000 11111",
}


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str
    family: str


@dataclass(frozen=True)
class Sample:
    """An RGB image (H×W×3 uint8) with one or more question turns about it; no image for a
    text-only record or question (LLaVA data and benchmarks have them)."""

    image: np.ndarray | None
    turns: tuple[Turn, ...]
    task: str
    # what each scene cell holds, row-major ("" = empty): the vision-pretraining target
    layout: tuple[str, ...] = ()

    @property
    def question(self) -> str:
        return self.turns[0].question

    @property
    def answer(self) -> str:
        return self.turns[0].answer

    @property
    def family(self) -> str:
        return self.turns[0].family


def vocabulary() -> list[str]:
    """Every word the synthetic tasks can produce (the tiny tokenizer's vocabulary)."""
    words = {"?", "row", "column", "top", "bottom", "left", "right", "middle", "yes", "no"}
    words.update(SHAPES, (s + "s" for s in SHAPES), COLOURS, NUMBERS, LETTERS)
    for _, _, question_words in _templates():
        words.update(question_words)
    return sorted(words)


def _templates() -> list[tuple[str, str, tuple[str, ...]]]:
    # (task, family, fixed words) — kept next to the generators so the vocabulary stays complete.
    return [
        ("shapes", "count", ("how", "many", "are", "there", "shapes", "objects")),
        ("shapes", "colour", ("what", "color", "is", "the", "shape", "in")),
        ("shapes", "position", ("where", "is", "the", "in", "image")),
        ("shapes", "exist", ("is", "there", "a")),
        ("text", "read_cell", ("what", "letter", "is", "at")),
        ("text", "read_row", ("what", "is", "written", "in")),
        ("text", "locate", ("where", "is", "the", "letter")),
        ("text", "count", ("how", "many", "letters", "are", "there")),
        ("reason", "compare", ("are", "there", "more", "shapes", "than")),
        ("reason", "sum", ("how", "many", "shapes", "are", "or")),
        ("reason", "rest", ("how", "many", "shapes", "are", "not")),
        ("reason", "most", ("which", "color", "has", "the", "most", "shapes")),
    ]


class SyntheticVQA:
    """A deterministic, random-access procedural VQA data set (see module docstring).

    ``size`` bounds the index space (a finite training set, revisited across epochs); the
    ``eval`` split draws from a disjoint random stream, so it is held out by construction.
    """

    def __init__(self, task: str, split: str, size: int, seed: int, image_size: int = 64, cells: int = 4,
                 questions_per_image: int = 1):
        if task not in TASKS:
            raise ValueError(f"unknown synthetic task {task!r}; choose one of {', '.join(TASKS)}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if image_size % cells:
            raise ValueError(f"image_size {image_size} must be a multiple of cells {cells}")
        if cells < 2 or cells > len(NUMBERS) - 1:
            raise ValueError(f"cells must be between 2 and {len(NUMBERS) - 1}, got {cells}")
        self.task, self.split, self.size, self.seed = task, split, size, seed
        if questions_per_image < 1:
            raise ValueError(f"questions_per_image must be at least 1, got {questions_per_image}")
        self.image_size, self.cells = image_size, cells
        self.cell_px = image_size // cells
        self.questions_per_image = questions_per_image

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, SPLITS[self.split], TASKS.index(self.task), index])
        parts: dict[str, tuple[Callable[..., Any], Callable[..., Turn]]] = {
            "shapes": (_shapes_scene, _shapes_question), "text": (_text_scene, _text_question),
            "reason": (_shapes_scene, _reason_question)}
        scene, ask = parts[self.task]
        image, content, layout = scene(rng, self.cells, self.cell_px)
        turns = tuple(ask(rng, content, self.cells) for _ in range(self.questions_per_image))
        return Sample(image, turns, self.task, layout)


# ---------------------------------------------------------------------------------------------
# shapes


@cache
def _shape_mask(shape: str, px: int, margin: int) -> np.ndarray:
    yy, xx = np.mgrid[0:px, 0:px].astype(np.float32) + 0.5
    c, r = px / 2, px / 2 - margin
    if shape == "circle":
        return (xx - c) ** 2 + (yy - c) ** 2 <= r * r
    if shape == "square":
        return (np.abs(xx - c) <= r * 0.85) & (np.abs(yy - c) <= r * 0.85)
    if shape == "triangle":
        top, bottom = c - r, c + r
        half_width = (yy - top) / (bottom - top) * r
        return (yy >= top) & (yy <= bottom) & (np.abs(xx - c) <= half_width)
    if shape == "cross":
        arm = max(1.0, r * 0.35)
        return ((np.abs(xx - c) <= arm) | (np.abs(yy - c) <= arm)) & (np.abs(xx - c) <= r) & (np.abs(yy - c) <= r)
    raise ValueError(shape)


def _region(row: int, col: int, cells: int) -> str:
    def third(i: int, lo: str, hi: str) -> str:
        # For even grids there is no middle band: a cell is in one half or the other.
        if cells % 2 == 1 and i == cells // 2:
            return "middle"
        return lo if i < cells / 2 else hi

    vertical, horizontal = third(row, "top", "bottom"), third(col, "left", "right")
    if vertical == horizontal == "middle":
        return "middle"
    return f"{vertical} {horizontal}"


Obj = tuple[int, int, str, str]  # row, column, shape, colour


def _shapes_scene(rng: np.random.Generator, cells: int, px: int) -> tuple[np.ndarray, list[Obj], tuple[str, ...]]:
    n = int(rng.integers(1, min(6, cells * cells) + 1))
    positions = rng.choice(cells * cells, size=n, replace=False)
    colour_names = list(COLOURS)
    objects = [
        (int(p) // cells, int(p) % cells, SHAPES[int(rng.integers(len(SHAPES)))],
         colour_names[int(rng.integers(len(colour_names)))])
        for p in positions
    ]
    image = np.zeros((cells * px, cells * px, 3), dtype=np.uint8)
    image[:] = (24, 24, 24)
    margin = max(1, px // 8)
    layout = [""] * (cells * cells)
    for row, col, shape, colour in objects:
        image[row * px:(row + 1) * px, col * px:(col + 1) * px][_shape_mask(shape, px, margin)] = COLOURS[colour]
        layout[row * cells + col] = f"{colour} {shape}"
    return image, objects, tuple(layout)


def _shapes_question(rng: np.random.Generator, objects: list[Obj], cells: int) -> Turn:
    n, colour_names = len(objects), list(COLOURS)
    family = ("count", "colour", "position", "exist")[int(rng.integers(4))]
    if family == "count":
        if rng.random() < 0.5:
            colour = colour_names[int(rng.integers(len(colour_names)))]
            return Turn(f"how many {colour} shapes are there ?", str(sum(o[3] == colour for o in objects)), family)
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        return Turn(f"how many {shape}s are there ?", str(sum(o[2] == shape for o in objects)), family)
    if family == "exist":
        if rng.random() < 0.5:
            _, _, shape, colour = objects[int(rng.integers(n))]
        else:
            present = {(o[2], o[3]) for o in objects}
            absent = [(s, c) for s in SHAPES for c in colour_names if (s, c) not in present]
            shape, colour = absent[int(rng.integers(len(absent)))]
        answer = "yes" if any(o[2] == shape and o[3] == colour for o in objects) else "no"
        return Turn(f"is there a {colour} {shape} ?", answer, family)
    # colour and position questions refer to one object by a description that is unique in the scene
    row, col, shape, colour = objects[int(rng.integers(n))]
    if family == "colour":
        if sum(o[2] == shape for o in objects) == 1:
            return Turn(f"what color is the {shape} ?", colour, family)
        return Turn(f"what color is the shape in row {row + 1} column {col + 1} ?", colour, family)
    twins = sum(o[2] == shape and o[3] == colour for o in objects)
    if twins > 1:  # "the red circle" would be ambiguous: ask how many there are instead
        return Turn(f"how many {colour} {shape}s are there ?", str(twins), "count")
    return Turn(f"where is the {colour} {shape} in the image ?", _region(row, col, cells), family)


def _reason_question(rng: np.random.Generator, objects: list[Obj], cells: int) -> Turn:
    colour_names = list(COLOURS)
    count = {c: sum(o[3] == c for o in objects) for c in colour_names}
    family = ("compare", "sum", "rest", "most")[int(rng.integers(4))]
    if family == "most":
        top = max(count.values())
        leaders = [c for c in colour_names if count[c] == top]
        if len(leaders) == 1:
            return Turn("which color has the most shapes ?", leaders[0], family)
        family = "compare"  # a tie has no single answer
    first, second = (colour_names[int(i)] for i in rng.choice(len(colour_names), size=2, replace=False))
    if family == "compare":
        return Turn(f"are there more {first} shapes than {second} shapes ?",
                    "yes" if count[first] > count[second] else "no", family)
    if family == "sum":
        return Turn(f"how many shapes are {first} or {second} ?", str(count[first] + count[second]), family)
    return Turn(f"how many shapes are not {first} ?", str(len(objects) - count[first]), family)


# ---------------------------------------------------------------------------------------------
# text


@cache
def _glyph(letter: str, px: int) -> np.ndarray:
    bits = np.array([[c == "1" for c in row] for row in _FONT_5X7[letter].split()], dtype=bool)
    scale = max(1, min((px - 2) // 5, (px - 2) // 7))
    glyph = np.kron(bits, np.ones((scale, scale), dtype=bool))
    out = np.zeros((px, px), dtype=bool)
    top, left = (px - glyph.shape[0]) // 2, (px - glyph.shape[1]) // 2
    out[top:top + glyph.shape[0], left:left + glyph.shape[1]] = glyph
    return out


def _text_scene(rng: np.random.Generator, cells: int, px: int):
    grid: dict[tuple[int, int], str] = {}
    n = int(rng.integers(1, min(6, cells * cells) + 1))
    for p in rng.choice(cells * cells, size=n, replace=False):
        grid[(int(p) // cells, int(p) % cells)] = LETTERS[int(rng.integers(len(LETTERS)))]
    image = np.zeros((cells * px, cells * px, 3), dtype=np.uint8)
    image[:] = (245, 245, 235)
    ink = np.array((20, 20, 20), dtype=np.uint8)
    for (row, col), letter in grid.items():
        image[row * px:(row + 1) * px, col * px:(col + 1) * px][_glyph(letter, px)] = ink
    layout = tuple(grid.get((r, c), "") for r in range(cells) for c in range(cells))
    return image, grid, layout


def _text_question(rng: np.random.Generator, grid: dict[tuple[int, int], str], cells: int) -> Turn:
    family = ("read_cell", "read_row", "locate", "count")[int(rng.integers(4))]
    occupied = sorted(grid)
    n = len(occupied)
    if family == "read_cell":
        row, col = occupied[int(rng.integers(n))]
        return Turn(f"what letter is at row {row + 1} column {col + 1} ?", grid[(row, col)], family)
    if family == "read_row":
        row = occupied[int(rng.integers(n))][0]
        letters = [grid[(r, c)] for (r, c) in occupied if r == row]
        return Turn(f"what is written in row {row + 1} ?", " ".join(letters), family)
    if family == "locate":
        row, col = occupied[int(rng.integers(n))]
        letter = grid[(row, col)]
        if sum(v == letter for v in grid.values()) == 1:
            return Turn(f"where is the letter {letter} ?", f"row {row + 1} column {col + 1}", family)
    return Turn("how many letters are there ?", str(n), "count")
