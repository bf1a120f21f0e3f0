"""Text prompts at this data's scale: the words of a dataset's class names, as token ids.

DALL-E conditions its image-token transformer on the prompt's text tokens. genzoo's data
has ten classes, each with a name ("Ankle boot", "T-shirt/top"), so the vocabulary is the
words of those names: lower-cased runs of letters and digits ("t", "shirt", "top", "ankle",
"boot", ...). A prompt is any sequence of those words, at most as many as the longest
class name has. Imports only torch.
"""

import re

import torch

_WORD = re.compile(r"[a-z0-9]+")
PAD = -1  # the id `encode` gives the padding before a prompt's words


def words(text: str) -> list[str]:
    """The words of `text`: lower-cased runs of letters and digits ("T-shirt/top" -> ["t", "shirt", "top"])."""
    return _WORD.findall(text.lower())


class PromptVocabulary:
    """The word vocabulary of a dataset's class names, and prompts as fixed-length id sequences.

    Args:
        class_names: label k's name (genzoo.data.sources.DatasetSpec.class_names).
    Attributes:
        words: the vocabulary, sorted; word i has id i.
        max_words: the longest class name's number of words: the prompts' length.
    Raises:
        ValueError: no class names, or a name without a word.
    """

    def __init__(self, class_names):
        self.class_names = tuple(class_names)
        split = [words(name) for name in self.class_names]
        if not split or not all(split):
            raise ValueError(f"prompts need class names with at least one word each, got {list(self.class_names)}")
        self.words = sorted({w for name in split for w in name})
        self.ids = {w: i for i, w in enumerate(self.words)}
        self.max_words = max(len(name) for name in split)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, prompts) -> torch.Tensor:
        """Prompts (n strings) -> ids (n, max_words) int64: each prompt's word ids, left-padded with PAD (-1).

        Raises ValueError (one line) for a prompt with no word, more than max_words words, or
        a word outside the vocabulary (the message lists the vocabulary).
        """
        rows = []
        for prompt in prompts:
            found = words(prompt)
            unknown = [w for w in found if w not in self.ids]
            if unknown:
                raise ValueError(f"prompt {prompt!r} has words outside the vocabulary ({', '.join(unknown)}): "
                                 f"prompts are made of the class names' words: {', '.join(self.words)}")
            if not found or len(found) > self.max_words:
                raise ValueError(f"prompt {prompt!r} has {len(found)} words: a prompt has 1 to {self.max_words} words, "
                                 f"e.g. {self.class_names[-1]!r}")
            rows.append([PAD] * (self.max_words - len(found)) + [self.ids[w] for w in found])
        return torch.tensor(rows, dtype=torch.long).view(len(rows), self.max_words)

    def class_prompts(self, labels) -> list[str]:
        """The class names of labels (n,) as prompts, e.g. [9] -> ["Ankle boot"]."""
        return [self.class_names[int(k)] for k in labels]
