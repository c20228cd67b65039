"""Make the sample data of specs/ (seeded, so it is the same every time):

    tales.txt     ~150 KB of prose from a small grammar, for the character-level language
                  model (specs/char_lm.yaml); original text, free to use
    reviews.csv   2,000 short product reviews with a sentiment label, for the sequence
                  classifier (specs/seq_classifier.yaml); negation ("not good") and
                  contrast ("good, but ... broke") decide many labels, so word order matters;
                  5% of the labels are flipped at random (noise), so ~95% is the ceiling
    pairs.tsv     a few lines of source<TAB>target (word order reversed), to show the tsv
                  format of seq2seq data

    python specs/data/make_data.py
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).parent

NAMES = ["Anna", "Ivan", "Maria", "Peter", "Sonya", "Dmitri", "Vera", "Nikolai", "Olga", "Kostya"]
PLACES = ["garden", "river", "station", "old house", "village", "orchard", "church", "mill", "road to town",
          "birch wood", "drawing room", "ballroom", "kitchen", "meadow", "frozen lake"]
THINGS = ["letter", "candle", "horse", "samovar", "book", "shawl", "window", "piano", "sleigh", "portrait",
          "clock", "basket of apples", "little dog", "lamp", "gate"]
FEELINGS = ["joy", "shame", "tenderness", "fear", "anger", "hope", "sorrow", "pride", "quiet happiness",
            "longing", "pity", "surprise"]
WENT = ["walked", "ran", "drove", "hurried", "wandered", "came back", "went slowly", "rode"]
SAW = ["looked at", "thought of", "spoke of", "remembered", "touched", "listened to", "forgot", "watched"]
ADVERBS = ["slowly", "at once", "without a word", "again", "in silence", "with a smile", "all at once",
           "for a long time", "as always", "at last"]
TIMES = ["In the morning", "That evening", "After dinner", "In the spring", "On Sunday", "Late at night",
         "When the snow came", "Before the guests arrived", "All that summer", "At dawn"]
SAYINGS = ["I cannot go on like this", "Everything will be different now", "You do not understand me",
           "Let us go home", "How strange it all is", "I have been waiting for you", "Do not be angry",
           "It is too late", "We shall see", "Tell me everything", "What a lovely day it is",
           "I knew you would come"]


def sentence(r: random.Random) -> str:
    a, b = r.sample(NAMES, 2)
    he = r.choice(["he", "she"])
    forms = [
        lambda: f"{a} {r.choice(WENT)} to the {r.choice(PLACES)} {r.choice(ADVERBS)}.",
        lambda: f"{r.choice(TIMES)}, {a} {r.choice(SAW)} the {r.choice(THINGS)}.",
        lambda: f"{a} felt {r.choice(FEELINGS)}, and {he} {r.choice(SAW)} {b}.",
        lambda: f'"{r.choice(SAYINGS)}," said {a}.',
        lambda: f'"{r.choice(SAYINGS)}," {b} answered {r.choice(ADVERBS)}, "{r.choice(SAYINGS).lower()}."',
        lambda: f"When {a} {r.choice(WENT)} to the {r.choice(PLACES)}, {b} {r.choice(SAW)} the "
                f"{r.choice(THINGS)} and thought of {r.choice(FEELINGS)}.",
        lambda: f"There was {r.choice(FEELINGS)} in the {r.choice(PLACES)}, and the {r.choice(THINGS)} "
                f"stood by the {r.choice(THINGS)}.",
        lambda: f"{a} did not know why {he} {r.choice(SAW)} {b} {r.choice(ADVERBS)}.",
    ]
    return r.choice(forms)()


def tales(r: random.Random, size: int = 150_000) -> str:
    out, chapter = [], 1
    while sum(map(len, out)) < size:
        out.append(f"Chapter {chapter}\n\n")
        for _ in range(r.randint(4, 8)):
            out.append(" ".join(sentence(r) for _ in range(r.randint(3, 7))) + "\n\n")
        chapter += 1
    return "".join(out)


ITEMS = ["phone", "kettle", "book", "jacket", "lamp", "chair", "camera", "blender", "backpack", "watch",
         "keyboard", "pan", "tent", "toaster", "headset"]
GOOD = ["good", "great", "excellent", "lovely", "perfect", "solid", "wonderful", "sturdy", "comfortable"]
BAD = ["bad", "awful", "terrible", "flimsy", "poor", "useless", "disappointing", "cheap", "noisy"]
LIKE, HATE = ["love", "like", "recommend", "enjoy"], ["hate", "regret buying", "dislike", "want to return"]
PRAISE = ["it works every day", "my kids use it all the time", "it arrived early", "worth every penny"]
BLAME = ["it broke after a week", "it stopped working", "the seller never answered", "it arrived damaged"]


def review(r: random.Random) -> tuple[str, str]:
    item = r.choice(ITEMS)
    pos = r.random() < 0.5
    form = r.randrange(5)
    if form == 0:  # plain
        text = f"the {item} is {r.choice(GOOD if pos else BAD)}"
    elif form == 1:  # negated: the word says the opposite of the label
        text = f"the {item} is not {r.choice(BAD if pos else GOOD)}"
    elif form == 2:
        text = f"i {r.choice(LIKE if pos else HATE)} this {item}"
    elif form == 3:  # contrast: the clause after 'but' decides
        first = r.choice(BAD if pos else GOOD)
        text = f"the {item} looks {first} but {r.choice(PRAISE if pos else BLAME)}"
    else:  # negated verb
        text = f"i do not {r.choice(HATE if pos else LIKE)} this {item}"
    if r.random() < 0.4:
        text += f" , {r.choice(['really', 'honestly', 'overall', 'to be fair'])} {r.choice(GOOD if pos else BAD)}"
    if r.random() < 0.3:
        text = r.choice(["well", "so", "ok", "hmm"]) + " " + text
    if r.random() < 0.05:  # reviewers are not always consistent: 5% of labels are flipped
        pos = not pos
    return text, "positive" if pos else "negative"


def main():
    r = random.Random(0)
    (HERE / "tales.txt").write_text(tales(r), encoding="utf-8")
    with open(HERE / "reviews.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(2000):
            w.writerow(review(r))
    lines = []
    for _ in range(40):
        words = [r.choice(THINGS + PLACES).split()[-1] for _ in range(r.randint(2, 5))]
        lines.append(" ".join(words) + "\t" + " ".join(reversed(words)))
    (HERE / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
