"""Few-shot turns from a JSON file: validated entry by entry, rendered before the question,
and carried through `gainrl score` to the exported prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gainrl_ops import cli
from gainrl_ops.data.datasets import DatasetError
from gainrl_ops.data.prompts import DEFAULT_SYSTEM_PROMPT, load_few_shot

SHOTS = [{"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4", "source": "hand-written"}, {"question": "What is 3 * 3?", "answer": "#### 9"}]


def _file(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "shots.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_few_shot_file_reads_pairs_in_order(tmp_path: Path) -> None:
    assert load_few_shot(_file(tmp_path, SHOTS)) == (("What is 2 + 2?", "2 + 2 = 4\n#### 4"), ("What is 3 * 3?", "#### 9"))
    assert load_few_shot(_file(tmp_path, [])) == ()


@pytest.mark.parametrize(("content", "where"), [
    ('[{"question": "a", ', ": invalid JSON at line 1, column 20"),
    ({"question": "a", "answer": "b"}, ": expected a JSON list"),
    ([SHOTS[0], "What is 1 + 1?"], ", row 1: not an object"),
    ([SHOTS[0], {"question": "a"}], ", row 1, field 'answer': missing"),
    ([{"question": "  ", "answer": "b"}], ", row 0, field 'question': must be non-empty text"),
    ([{"question": "a", "answer": 4}], ", row 0, field 'answer': must be non-empty text, got int 4"),
])
def test_bad_few_shot_file_names_file_entry_and_field(tmp_path: Path, content: object, where: str) -> None:
    path = _file(tmp_path, content)
    with pytest.raises(DatasetError) as error:
        load_few_shot(path)
    assert str(error.value).startswith(f"{path}{where}") and "\n" not in str(error.value)


def test_score_with_few_shot_renders_the_turns_before_each_question(tmp_path: Path, tiny_model_path: Path) -> None:
    data = tmp_path / "pens.jsonl"
    data.write_text("".join(json.dumps({"problem": f"Ann has {i} pens and gets 2 more. How many?", "answer": str(i + 2)}) + "\n" for i in range(12)))
    shots = _file(tmp_path, SHOTS)
    assert cli.main(["score", "--data", str(data), "--model", str(tiny_model_path), "--name", "pens", "--few-shot", str(shots)]) == 0
    out = tmp_path / "train.parquet"
    assert cli.main(["export", "--dataset", "pens", "--format", "verl", "--out", str(out)]) == 0
    prompt = pq.read_table(out).to_pylist()[0]["prompt"]
    assert prompt[:5] == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": SHOTS[0]["question"]}, {"role": "assistant", "content": SHOTS[0]["answer"]},
        {"role": "user", "content": SHOTS[1]["question"]}, {"role": "assistant", "content": SHOTS[1]["answer"]},
    ]
    assert prompt[5]["role"] == "user" and prompt[5]["content"].startswith("Ann has") and len(prompt) == 6


def test_score_with_a_bad_few_shot_file_fails_in_one_line_before_any_work(tmp_path: Path, gainrl_home: Path, capsys) -> None:
    shots = _file(tmp_path, [SHOTS[0], {"question": "What is 1 + 1?", "solution": "2"}])
    assert cli.main(["score", "--few-shot", str(shots)]) == 2
    assert capsys.readouterr().err == f"gainrl score: {shots}, row 1, field 'answer': missing\n"
    assert not gainrl_home.exists()
