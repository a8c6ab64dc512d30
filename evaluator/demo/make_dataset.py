"""Write the demo's conversational dataset: ``data/train.jsonl`` and ``data/test.jsonl``.

Run once with ``python -m evaluator.demo.make_dataset``; the output is committed next to this script,
and re-running it rewrites the same bytes (a seeded ``random.Random``, no set iteration, no clock).
``tests/evaluator/test_demo_data.py`` checks both.

Five kinds of conversation, each a ``category``, written so that a tiny model trained for a few
minutes on a CPU learns some of them and not others:

- ``support``: an online shop's help desk; slot-filled (order numbers, products), often 2-3 turns,
  often with a system prompt. The replies follow one template per intent: learnable.
- ``smalltalk``: greetings, thanks, goodbyes, jokes; a few fixed replies: learnable.
- ``arithmetic``: "What is 12 plus 7?" -> "12 plus 7 is 19."; the frame and the operands are copied
  from the question, the result has to be computed: partly learnable.
- ``factual``: capitals, chemical symbols, animal facts from a fixed pool; a test question may ask a
  fact seen in training under another wording: partly learnable (memorisation).
- ``spelling``: "Spell garden backwards." -> "Spelled backwards, garden is n-e-d-r-a-g."; the test
  split asks only words never seen in training, so it needs character-level work that a byte-pair
  model of this size does not learn: stays bad.

Each line: ``{"id", "category", "messages": [{"role", "content"}, ...]}`` (OpenAI messages format),
the last message always from the assistant. Replies are 5-25 words, with one planted exception:

- A data bug, on purpose: in the *train* split, three quarters of the help desk's replies about opening
  hours are empty (as if an export dropped them). Fine-tuned on that, the models answer some
  opening-hours questions with nothing, so the demo has empty answers to find, and a cause to trace
  back to the training data. The test split's references are all intact.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20240611
N_TRAIN = 400
N_TEST = 120
DATA_DIR = Path(__file__).resolve().parent / "data"  # = evaluator.demo.DATA_DIR

# Share of each category (the rest of the rounding goes to support).
MIX = {"support": 0.32, "smalltalk": 0.18, "arithmetic": 0.2, "factual": 0.2, "spelling": 0.1}

SHOP = "Nimbus"
SUPPORT_SYSTEM = [
    f"You are a friendly support agent for {SHOP}, an online shop. Keep answers short.",
    f"You work at the {SHOP} help desk. Be polite and brief.",
    f"You are {SHOP}'s customer support assistant.",
]
GENERAL_SYSTEM = [
    "You are a helpful assistant. Answer in one short sentence.",
    "You are a concise assistant.",
    "Answer briefly and clearly.",
]

PRODUCTS = ["blue kettle", "desk lamp", "yoga mat", "coffee grinder", "rain jacket", "phone case",
            "wool scarf", "water bottle", "backpack", "toaster", "table fan", "wall clock",
            "garden hose", "bath towel", "chess set", "headphones"]
CITIES = ["Leeds", "Porto", "Lyon", "Graz", "Turin", "Malmo", "Ghent", "Cork", "Brno", "Bergen"]


def _order(rng: random.Random) -> str:
    return str(rng.randint(10000, 99999))


def _support(rng: random.Random) -> list[dict]:
    """A help-desk conversation: an intent, sometimes a follow-up, sometimes a thank-you."""
    order, product, days = _order(rng), rng.choice(PRODUCTS), rng.randint(2, 6)
    city = rng.choice(CITIES)
    intent = rng.choice(["late", "refund", "password", "address", "cancel", "broken", "hours"])
    turns: list[tuple[str, str]] = []
    if intent == "late":
        ask = rng.choice([f"My order {order} has not arrived yet.", f"Where is my order {order}?",
                          f"Order {order} is late, can you check it?", f"I am still waiting for order {order}."])
        turns.append((ask, f"I am sorry about the delay. Order {order} is on its way and arrives in {days} days."))
        if rng.random() < 0.6:
            turns.append((rng.choice(["Can I get a refund instead?", "I would rather have my money back.",
                                      "Please refund it instead."]),
                          f"Of course. I have started a refund for order {order}; it takes five working days."))
    elif intent == "refund":
        ask = rng.choice([f"I want to return the {product} I bought.", f"Can I send back my {product}?",
                          f"The {product} is not what I expected, can I return it?"])
        turns.append((ask, f"Yes, you can return the {product} within thirty days. I will email you a return label."))
        if rng.random() < 0.5:
            turns.append((rng.choice(["How long does the refund take?", "When do I get my money?"]),
                          "Your refund arrives five working days after we receive the item."))
    elif intent == "password":
        ask = rng.choice(["I forgot my password.", "How do I reset my password?", "I cannot log in to my account.",
                          "My password does not work anymore."])
        turns.append((ask, "No problem. Click Forgot password on the login page and follow the link we email you."))
        if rng.random() < 0.5:
            turns.append((rng.choice(["I did not get the email.", "The email never came."]),
                          "Please check your spam folder. If it is not there, I can send the link again."))
    elif intent == "address":
        ask = rng.choice([f"I moved to {city}, can I change the address for order {order}?",
                          f"Please send order {order} to my new address in {city}."])
        turns.append((ask, f"Sure. I have updated the delivery address of order {order} to your address in {city}."))
    elif intent == "cancel":
        ask = rng.choice([f"Please cancel order {order}.", f"I want to cancel my order {order}.",
                          f"Can you cancel order {order} for me?"])
        turns.append((ask, f"Done. Order {order} is cancelled and you will not be charged."))
    elif intent == "broken":
        ask = rng.choice([f"My {product} arrived broken.", f"The {product} I received is damaged.",
                          f"The {product} stopped working after one day."])
        turns.append((ask, f"I am sorry about that. I will send you a new {product} today at no cost."))
        if rng.random() < 0.5:
            turns.append((rng.choice(["Do I need to send the old one back?", "What do I do with the broken one?"]),
                          "No need to send it back. You can recycle it."))
    else:  # hours
        ask = rng.choice(["When are you open?", "What are your opening hours?", "Can I call you on Sunday?"])
        turns.append((ask, HOURS_REPLY))
    if rng.random() < 0.35:
        turns.append((rng.choice(["Thanks!", "Thank you, that helps.", "Great, thanks a lot.", "Perfect, thank you."]),
                      "You are welcome. Is there anything else I can help you with?"))
    system = rng.choice(SUPPORT_SYSTEM) if rng.random() < 0.6 else None
    return _messages(system, turns)


HOURS_REPLY = "Our help desk is open Monday to Friday, from nine in the morning to six in the evening."
DROPPED_SHARE = 3 / 4  # of the train split's opening-hours replies, emptied (see the module docstring)

JOKES = [
    ("Why did the scarecrow win an award?", "Because he was outstanding in his field."),
    ("Why do bees hum?", "Because they do not know the words."),
    ("What do you call a fish without eyes?", "A fsh."),
    ("Why did the bicycle fall over?", "Because it was two tired."),
]


def _smalltalk(rng: random.Random) -> list[dict]:
    kind = rng.choice(["hello", "how", "joke", "bye", "name", "weather"])
    turns: list[tuple[str, str]] = []
    if kind == "hello":
        turns.append((rng.choice(["Hello!", "Hi there.", "Good morning!", "Hey, how is it going?"]),
                      "Hello! It is nice to meet you. How can I help you today?"))
    elif kind == "how":
        turns.append((rng.choice(["How are you?", "How are you doing today?", "Are you having a good day?"]),
                      "I am doing well, thank you for asking. How are you?"))
        if rng.random() < 0.6:
            turns.append((rng.choice(["I am fine, thanks.", "Pretty good.", "Not bad at all."]),
                          "I am glad to hear that. What would you like to talk about?"))
    elif kind == "joke":
        setup, punch = rng.choice(JOKES)
        turns.append((rng.choice(["Tell me a joke.", "Do you know a joke?", "Make me laugh."]),
                      f"Here is one: {setup} {punch}"))
        if rng.random() < 0.5:
            turns.append((rng.choice(["Haha, that is funny.", "Good one!", "Ha, I like it."]),
                          "I am happy you liked it. Do you want to hear another one?"))
    elif kind == "bye":
        turns.append((rng.choice(["Goodbye!", "See you later.", "I have to go now, bye."]),
                      "Goodbye! It was nice talking to you. Have a great day."))
    elif kind == "name":
        turns.append((rng.choice(["What is your name?", "Who are you?", "What should I call you?"]),
                      "I am a small demo assistant. You can call me Demo."))
    else:
        turns.append((rng.choice(["Nice weather today, right?", "It is raining again.", "Is it sunny where you are?"]),
                      "I cannot see the sky, but I hope the weather is nice where you are."))
    system = rng.choice(GENERAL_SYSTEM) if rng.random() < 0.25 else None
    return _messages(system, turns)


def _arithmetic(rng: random.Random) -> list[dict]:
    op = rng.choice(["plus", "minus", "times"])
    a, b = rng.randint(2, 20), rng.randint(2, 12)
    if op == "minus" and b > a:
        a, b = b, a
    c = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    ask = rng.choice([f"What is {a} {op} {b}?", f"How much is {a} {op} {b}?", f"Can you compute {a} {op} {b}?",
                      f"Please tell me {a} {op} {b}."])
    turns = [(ask, f"{a} {op} {b} is {c}.")]
    if rng.random() < 0.3:
        turns.append((rng.choice(["And times two?", "What is that times two?", "Double it, please."]),
                      f"{c} times 2 is {c * 2}."))
    system = rng.choice(GENERAL_SYSTEM) if rng.random() < 0.3 else None
    return _messages(system, turns)


CAPITALS = [("France", "Paris"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Germany", "Berlin"),
            ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Peru", "Lima"),
            ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Chile", "Santiago"),
            ("Poland", "Warsaw"), ("Ireland", "Dublin"), ("Portugal", "Lisbon"), ("Austria", "Vienna")]
SYMBOLS = [("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("oxygen", "O"), ("carbon", "C"),
           ("sodium", "Na"), ("helium", "He"), ("copper", "Cu")]
ANIMALS = [("spider", "eight"), ("insect", "six"), ("dog", "four"), ("bird", "two"), ("octopus", "eight"),
           ("horse", "four"), ("ant", "six"), ("snake", "no")]


def _factual(rng: random.Random) -> list[dict]:
    kind = rng.choice(["capital", "capital", "symbol", "legs"])
    if kind == "capital":
        country, capital = rng.choice(CAPITALS)
        ask = rng.choice([f"What is the capital of {country}?", f"Which city is the capital of {country}?",
                          f"Tell me the capital of {country}."])
        turns = [(ask, f"The capital of {country} is {capital}.")]
        if rng.random() < 0.25:
            turns.append((rng.choice([f"Have you been to {capital}?", f"Is {capital} a big city?"]),
                          f"I cannot travel, but {capital} is a well known city in {country}."))
    elif kind == "symbol":
        element, symbol = rng.choice(SYMBOLS)
        ask = rng.choice([f"What is the chemical symbol for {element}?", f"Which symbol stands for {element}?"])
        turns = [(ask, f"The chemical symbol for {element} is {symbol}.")]
    else:
        animal, legs = rng.choice(ANIMALS)
        ask = rng.choice([f"How many legs does a {animal} have?", f"Count the legs of a {animal}."])
        turns = [(ask, f"A {animal} has {legs} legs.")]
    system = rng.choice(GENERAL_SYSTEM) if rng.random() < 0.3 else None
    return _messages(system, turns)


WORDS = ["garden", "pencil", "window", "river", "candle", "planet", "orange", "silver", "basket", "jungle",
         "rocket", "mirror", "button", "ladder", "tunnel", "violin", "forest", "anchor", "castle", "marble",
         "pepper", "saddle", "wallet", "bridge", "cactus", "falcon", "helmet", "lemon", "magnet", "puzzle"]


def _spelling(rng: random.Random, split: str) -> list[dict]:
    # Test words are never seen in training: reversing them needs the skill, not a memory.
    word = rng.choice(WORDS[:12] if split == "test" else WORDS[12:])
    ask = rng.choice([f"Spell {word} backwards.", f"How do you write {word} backwards?",
                      f"Can you reverse the letters of {word}?"])
    letters = "-".join(reversed(word))
    turns = [(ask, f"Spelled backwards, {word} is {letters}.")]
    system = rng.choice(GENERAL_SYSTEM) if rng.random() < 0.2 else None
    return _messages(system, turns)


MAKERS = {"support": _support, "smalltalk": _smalltalk, "arithmetic": _arithmetic, "factual": _factual}


def _messages(system: str | None, turns: list[tuple[str, str]]) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    for user, assistant in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages


def _counts(n: int) -> dict[str, int]:
    counts = {name: int(n * share) for name, share in MIX.items()}
    counts["support"] += n - sum(counts.values())
    return counts


def generate(seed: int = SEED, n_train: int = N_TRAIN, n_test: int = N_TEST) -> tuple[list[dict], list[dict]]:
    """Both splits as lists of rows. No conversation appears in both (nor twice in one)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {}
    for split, n in (("test", n_test), ("train", n_train)):  # test first: its rows are fixed by the seed alone
        rows = []
        for category, count in _counts(n).items():
            made = 0
            while made < count:
                messages = _spelling(rng, split) if category == "spelling" else MAKERS[category](rng)
                fingerprint = json.dumps(messages, sort_keys=True)
                if fingerprint in seen:  # a duplicate would leak test answers into training verbatim
                    continue
                seen.add(fingerprint)
                if split == "train" and any(m["content"] == HOURS_REPLY for m in messages) \
                        and rng.random() < DROPPED_SHARE:
                    messages = [dict(m, content="" if m["content"] == HOURS_REPLY else m["content"])
                                for m in messages]  # the planted data bug
                rows.append({"category": category, "messages": messages})
                made += 1
        rng.shuffle(rows)
        splits[split] = [{"id": f"{split}-{i:04d}", **row} for i, row in enumerate(rows)]
    return splits["train"], splits["test"]


def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main() -> None:
    train, test = generate()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test)):
        path = DATA_DIR / f"{name}.jsonl"
        path.write_text(to_jsonl(rows), encoding="utf-8")
        print(f"wrote {len(rows)} conversations to {path}")


if __name__ == "__main__":
    main()
