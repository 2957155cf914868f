"""A small labelled text task, written for this project, to judge sentence encoders by accuracy.

Six topics × twelve sentences. The metric is leave-one-out nearest-centroid accuracy: each sentence is
assigned to the topic whose mean embedding (of the *other* sentences) is most cosine-similar. An encoder
that keeps the geometry of the fp32 embeddings keeps this accuracy.
"""

from __future__ import annotations

import numpy as np

TOPICS: dict[str, tuple[str, ...]] = {
    "sport": (
        "The striker scored twice in the second half.",
        "Our team lost the final on penalties.",
        "She broke the national record in the 400 metres.",
        "The coach was sacked after ten defeats in a row.",
        "He served an ace to win the tennis match.",
        "The marathon runners set off at dawn.",
        "The goalkeeper saved a late header.",
        "They won the league title on the last day of the season.",
        "The cyclist attacked on the final mountain climb.",
        "A crowd of fifty thousand watched the derby.",
        "The referee showed him a red card for a reckless tackle.",
        "She swam the butterfly leg of the relay.",
    ),
    "cooking": (
        "Preheat the oven and whisk the eggs with sugar.",
        "Simmer the tomato sauce for twenty minutes.",
        "Knead the dough until it is smooth and elastic.",
        "Season the steak with salt and pepper before searing.",
        "Chop the onions finely and fry them in butter.",
        "Let the bread rise in a warm place for an hour.",
        "Add a pinch of cinnamon to the apple pie filling.",
        "Roast the vegetables with olive oil and garlic.",
        "Stir the risotto constantly while adding the stock.",
        "Marinate the chicken overnight in yoghurt and spices.",
        "Fold the whipped cream gently into the chocolate.",
        "Boil the pasta in plenty of salted water.",
    ),
    "computing": (
        "The new phone has a faster chip and better battery life.",
        "Restart the server after installing the security patch.",
        "The compiler reports a type error on line twelve.",
        "Our database query is slow because the index is missing.",
        "The laptop overheats when the graphics card is busy.",
        "Update the operating system to fix the bug.",
        "The program crashed with a null pointer exception.",
        "Cloud storage lets you sync files across devices.",
        "The neural network was trained on eight GPUs.",
        "Encrypt the disk before you ship the machine.",
        "The website went down under heavy traffic.",
        "Write unit tests before refactoring the module.",
    ),
    "weather": (
        "Heavy rain is expected across the north tomorrow.",
        "A heatwave pushed temperatures above forty degrees.",
        "Snow closed the mountain passes overnight.",
        "The forecast says it will be sunny and mild.",
        "Strong winds brought down trees along the coast.",
        "Fog delayed flights at the airport this morning.",
        "A thunderstorm with hail swept through the valley.",
        "The drought has left the reservoirs half empty.",
        "Frost is likely in rural areas tonight.",
        "The hurricane made landfall late on Sunday.",
        "It has been the wettest autumn on record.",
        "Clear skies will bring a cold night.",
    ),
    "finance": (
        "The central bank raised interest rates again.",
        "Shares fell sharply after the profit warning.",
        "Inflation slowed to three percent last month.",
        "The company plans to buy back its own stock.",
        "Bond yields rose as investors sold government debt.",
        "The startup raised forty million in its latest round.",
        "The currency weakened against the dollar.",
        "Quarterly earnings beat analysts' expectations.",
        "Mortgage rates have doubled in two years.",
        "The merger still needs approval from regulators.",
        "Oil prices jumped after the supply cut.",
        "Pension funds moved money into index trackers.",
    ),
    "health": (
        "Regular exercise lowers the risk of heart disease.",
        "The vaccine trial enrolled thirty thousand people.",
        "Drink plenty of water when you have a fever.",
        "The patient recovered well after knee surgery.",
        "Sleep deprivation weakens the immune system.",
        "The doctor prescribed antibiotics for the infection.",
        "A balanced diet includes fruit and vegetables.",
        "The hospital opened a new cancer ward.",
        "Wash your hands to stop germs spreading.",
        "High blood pressure often has no symptoms.",
        "The nurse checked his pulse and temperature.",
        "Smoking damages the lungs over many years.",
    ),
}


def labelled_sentences() -> tuple[list[str], np.ndarray]:
    """All sentences and their topic indices (in `TOPICS` order)."""
    sentences, labels = [], []
    for index, examples in enumerate(TOPICS.values()):
        sentences += list(examples)
        labels += [index] * len(examples)
    return sentences, np.asarray(labels, dtype=np.int64)


def leave_one_out_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Nearest-centroid accuracy in percent, each sentence left out of its own topic's centroid."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    classes = np.unique(labels)
    sums = np.stack([unit[labels == c].sum(axis=0) for c in classes])
    counts = np.asarray([(labels == c).sum() for c in classes], dtype=np.float64)
    correct = 0
    for i, (vector, label) in enumerate(zip(unit, labels, strict=True)):
        centroids = sums.copy()
        centroids[label] -= unit[i]
        centroids /= (counts - (classes == label))[:, None]
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        correct += int(classes[np.argmax(centroids @ vector)] == label)
    return 100.0 * correct / len(labels)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of matching rows of ``a`` and ``b``."""
    a_unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    b_unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.mean(np.sum(a_unit * b_unit, axis=1)))
