"""How a generated answer is scored against a benchmark question — each benchmark by its own rule,
as LLaVA-1.5's evaluation scripts do:

    exact_match      GQA: 1 if the normalised answer equals the reference (one string)
    vqa_accuracy     TextVQA, VQAv2: min(#annotators who gave the normalised answer / 3, 1)
    multiple_choice  MMBench, ScienceQA, SEED: 1 if the chosen option (its letter, or its text) is the reference letter
    yes_no           POPE: 1 if the answer's yes/no equals the reference

A question is a dict as read from the benchmark's JSONL: ``answer`` (a string) or ``answers``
(the annotators' list), and for multiple choice ``options`` and a letter ``answer``. Pure Python;
``SCORERS`` is the registry the spec's ``scorer`` field lists.
"""

from __future__ import annotations

import re

# The VQA evaluation's normalisation (Antol et al.; the official vqaEval.py), step by step.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've",
    "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
PUNCTUATION = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
               "!"]
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def _punctuation(text: str) -> str:
    out = text
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, re.UNICODE)


def _digits_articles_contractions(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = NUMBERS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_normalise(answer: str) -> str:
    """The VQA evaluation's answer normalisation: whitespace, punctuation, number words → digits,
    articles dropped, contractions restored."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return _digits_articles_contractions(_punctuation(text))


def simple_normalise(answer: str) -> str:
    """Lower case, no surrounding space or final full stop (GQA's exact match)."""
    return answer.strip().lower().rstrip(".").strip()


class Scorer:
    name: str
    summary: str

    def score(self, prediction: str, question: dict) -> float:
        raise NotImplementedError

    def prompt(self, question: dict) -> str:
        """The question as the model is asked it."""
        return question["text"]


class ExactMatch(Scorer):
    name, summary = "exact_match", "1 if the normalised answer equals the reference (GQA)"

    def score(self, prediction, question):
        return float(simple_normalise(prediction) == simple_normalise(str(question["answer"])))


class VQAAccuracy(Scorer):
    name, summary = "vqa_accuracy", "min(#annotators who gave the answer / 3, 1) after VQA normalisation (TextVQA, VQAv2)"

    def score(self, prediction, question):
        answers = question.get("answers") or [question["answer"]]
        p = vqa_normalise(prediction)
        return min(sum(vqa_normalise(str(a)) == p for a in answers) / 3.0, 1.0)


LETTERS = "ABCDEFGHIJ"


class MultipleChoice(Scorer):
    name, summary = "multiple_choice", "1 if the chosen option, by letter or by its text, is the reference (MMBench, SEED)"

    def prompt(self, question):
        options = question.get("options") or []
        listed = "".join(f"\n{LETTERS[i]}. {o}" for i, o in enumerate(options))
        return f"{question['text']}{listed}\nAnswer with the option's letter from the given choices directly."

    def choice(self, prediction: str, options: list[str]) -> str | None:
        """The letter the prediction picks: an option's full text first ("A dog." is that option, not
        letter A), else a leading letter (``B``, ``(B)``, ``B.``), else a letter standing alone."""
        valid = LETTERS[:len(options)] if options else LETTERS
        text = prediction.strip()
        lowered = text.lower().rstrip(".").strip()
        for i, option in enumerate(options):
            if lowered == str(option).strip().lower().rstrip("."):
                return LETTERS[i]
        m = re.match(r"^\(?([A-J])\)?(?:[.:)\s]|$)", text)
        if m and m.group(1) in valid:
            return m.group(1)
        m = re.search(r"\b([A-J])\b", text)
        return m.group(1) if m and m.group(1) in valid else None

    def score(self, prediction, question):
        return float(self.choice(prediction, question.get("options") or []) == str(question["answer"]).strip().upper())


class YesNo(Scorer):
    name, summary = "yes_no", "1 if the answer's yes or no is the reference (POPE)"

    @staticmethod
    def polarity(text: str) -> str | None:
        words = re.findall(r"[a-z]+", text.lower())
        for w in words:  # the first yes or no, as POPE's evaluation reads it
            if w in ("yes", "no"):
                return w
        return None

    def score(self, prediction, question):
        return float(self.polarity(prediction) == self.polarity(str(question["answer"])))


SCORERS: dict[str, Scorer] = {s.name: s for s in (ExactMatch(), VQAAccuracy(), MultipleChoice(), YesNo())}
