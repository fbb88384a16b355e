"""Datasets, messy CSV files, the split and the preprocessor."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.model_selection import train_test_split

from evomlp.artifacts import load_npz, save_npz
from evomlp.data import DataOptions, Preprocessor, encode_labels, infer_task, load_dataset, split_rows
from evomlp.errors import EvomlpError


def write(tmp_path, text: str | bytes, name: str = "data.csv"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def balanced_csv(n: int = 20, extra: str = "") -> str:
    """``n`` rows of two numeric features, a text feature and a two-class label."""
    lines = ["a,b,colour,label"]
    for i in range(n):
        lines.append(f"{i},{(i * 7) % 5}.5,{['red', 'green', 'blue'][i % 3]},{'yes' if i % 2 else 'no'}")
    return "\n".join(lines) + "\n" + extra


def error_of(call, *args) -> str:
    with pytest.raises(EvomlpError) as caught:
        call(*args)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    return message


def file_error(path, call, *args) -> str:
    """The message of ``call(*args)``, which must start with ``path``; returned without it."""
    message = error_of(call, *args)
    assert message.startswith(f"{path}: "), message
    return message[len(f"{path}: "):]


def prepare(path, target="label", test_size=0.3, validation_size=0.2, seed=42, stratify=False, impute="none"):
    """What the prepare stage does, up to the transformed parts."""
    dataset = load_dataset(str(path), target)
    task = infer_task(dataset.target, "auto")
    y, classes = encode_labels(dataset.target, task)
    split = split_rows(y, task, test_size, validation_size, seed, stratify, dataset.source,
                       column=target, class_names=classes)
    pre = Preprocessor(impute).fit(dataset.features.iloc[split.train], dataset.source)
    return dataset, split, pre, {
        name: pre.transform(dataset.features.iloc[getattr(split, name)], dataset.source)
        for name in ("train", "validation", "test")
    }


# ---------------------------------------------------------------------------------------------
# Messy CSV files: one-line errors naming the file (and the column)


def test_a_clean_csv_loads_numeric_and_text_columns(tmp_path):
    path = write(tmp_path, balanced_csv())
    dataset, split, pre, parts = prepare(path)
    assert dataset.source == str(path) and dataset.target_name == "label"
    assert pre.numeric == ["a", "b"] and pre.categorical == ["colour"]
    assert pre.feature_names == ["a", "b", "colour=blue", "colour=green", "colour=red"]
    assert parts["train"].shape == (len(split.train), 5)
    # numeric columns are used as they are: undoing the standardisation gives the raw values back
    raw = parts["test"] * pre.scale + pre.mean
    expected = dataset.features.iloc[split.test][["a", "b"]].to_numpy(dtype=float)
    np.testing.assert_allclose(raw[:, :2], expected)


def test_a_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    assert "not found" in file_error(path, load_dataset, str(path), "label")


def test_a_missing_target_column(tmp_path):
    path = write(tmp_path, balanced_csv())
    message = file_error(path, load_dataset, str(path), "class")
    assert "'class'" in message and "'label'" in message


def test_a_single_class(tmp_path):
    path = write(tmp_path, "a,label\n1,x\n2,x\n3,x\n")
    message = file_error(path, load_dataset, str(path), "label")
    assert "'label'" in message and "single" in message and "'x'" in message


def test_infer_task_names_file_and_column_for_a_single_class():
    labels = pd.Series(["x", "x"], name="kind")
    labels.attrs["source"] = "some.csv"
    message = error_of(infer_task, labels, "binary")
    assert message.startswith("some.csv: ") and "'kind'" in message


def test_too_few_rows_for_the_split(tmp_path):
    path = write(tmp_path, "a,label\n1,x\n2,y\n")
    dataset = load_dataset(str(path), "label")
    y, _ = encode_labels(dataset.target, "binary")
    message = file_error(path, split_rows, y, "binary", 0.3, 0.2, 42, False, dataset.source)
    assert "too few rows" in message


def test_a_class_too_small_for_the_stratified_split(tmp_path):
    path = write(tmp_path, balanced_csv(extra="99,1.5,red,rare\n"))
    dataset = load_dataset(str(path), "label")
    task = infer_task(dataset.target)
    y, classes = encode_labels(dataset.target, task)
    split = functools.partial(split_rows, column="label", class_names=classes)
    message = file_error(path, split, y, task, 0.3, 0.2, 42, True, dataset.source)
    assert "'label'" in message and "'rare'" in message and "only 1 row" in message


def test_more_classes_than_validation_rows(tmp_path):
    rows = "".join(f"{i},c{i % 6}\n" for i in range(12))
    path = write(tmp_path, "a,label\n" + rows)
    dataset = load_dataset(str(path), "label")
    y, _ = encode_labels(dataset.target, "multiclass")
    # ceil(0.3 * 12) = 4 test rows for 6 classes
    message = file_error(path, split_rows, y, "multiclass", 0.3, 0.2, 42, True, dataset.source)
    assert "too few rows" in message and "6 classes" in message


def test_an_empty_file(tmp_path):
    path = write(tmp_path, "")
    message = file_error(path, load_dataset, str(path), "label")
    assert "empty" in message


def test_a_file_with_only_a_header(tmp_path):
    path = write(tmp_path, "a,b,label\n")
    message = file_error(path, load_dataset, str(path), "label")
    assert "no data rows" in message


def test_a_file_that_is_not_utf8(tmp_path):
    path = write(tmp_path, "a,label\n1,x\n2,caf\xe9\n".encode("latin-1"))
    message = file_error(path, load_dataset, str(path), "label")
    assert "UTF-8" in message and "line 3" in message


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = write(tmp_path, ("\ufeff" + balanced_csv()).encode("utf-8"))
    assert list(load_dataset(str(path), "label").features.columns) == ["a", "b", "colour"]


def test_missing_labels(tmp_path):
    path = write(tmp_path, balanced_csv(extra="5,1.5,red,\n6,2.5,red,\n"))
    message = file_error(path, load_dataset, str(path), "label")
    # data row 21 is line 22 of the file (the header is line 1); the option that drops them is named
    assert "'label'" in message and "2 row(s)" in message and "line 22" in message
    assert "data.drop_missing_target: true" in message


def test_duplicate_column_names(tmp_path):
    path = write(tmp_path, "a,b,a,label\n1,2,3,x\n4,5,6,y\n")
    message = file_error(path, load_dataset, str(path), "label")
    assert "duplicate" in message and "['a']" in message


def test_an_entirely_empty_feature_column(tmp_path):
    text = "a,empty,label\n" + "".join(f"{i},,{'xy'[i % 2]}\n" for i in range(10))
    path = write(tmp_path, text)
    message = file_error(path, load_dataset, str(path), "label")
    assert "'empty'" in message and "all 10 rows" in message


def test_an_unparsable_file(tmp_path):
    path = write(tmp_path, 'a,label\n1,x\n2,y,3,4\n"unclosed\n')
    message = file_error(path, load_dataset, str(path), "label")
    assert "CSV" in message


def test_rows_with_more_fields_than_the_header(tmp_path):
    path = write(tmp_path, "a,label\n1,2,x\n3,4,y\n")
    assert "more fields than the header" in file_error(path, load_dataset, str(path), "label")


def test_an_infinite_value(tmp_path):
    path = write(tmp_path, "a,label\n1,x\ninf,y\n3,x\n")
    message = file_error(path, load_dataset, str(path), "label")
    assert "'a'" in message and "infinite" in message


def test_missing_values_without_imputation_name_the_column_and_count(tmp_path):
    text = "a,b,label\n" + "".join(f"{i},{'' if i in (1, 4, 7) else i},{'xy'[i % 2]}\n" for i in range(12))
    dataset = load_dataset(str(write(tmp_path, text)), "label")
    message = file_error(dataset.source, Preprocessor("none").fit, dataset.features, dataset.source)
    assert "'b'" in message and "3 row(s)" in message and "data.impute" in message


def test_missing_text_values_without_imputation(tmp_path):
    text = "a,c,label\n" + "".join(f"{i},{'' if i == 3 else 'pq'[i % 2]},{'xy'[i % 2]}\n" for i in range(8))
    dataset = load_dataset(str(write(tmp_path, text)), "label")
    message = error_of(Preprocessor("none").fit, dataset.features, dataset.source)
    assert "'c'" in message and "1 row(s)" in message


def test_missing_values_only_outside_the_training_rows_are_still_an_error(tmp_path):
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": ["p", "q", "p"]})
    other = pd.DataFrame({"a": [np.nan, 2.0, np.nan], "c": ["p", None, "q"]})
    pre = Preprocessor("none").fit(train, "f.csv")
    message = error_of(pre.transform, other, "f.csv")
    assert message.startswith("f.csv: column 'a'") and "2 row(s)" in message
    message = error_of(pre.transform, other.assign(a=1.0), "f.csv")
    assert message.startswith("f.csv: column 'c'") and "1 row(s)" in message


def test_median_imputation_uses_the_training_rows_only():
    train = pd.DataFrame({"a": [1.0, 2.0, np.nan, 10.0], "c": ["p", "q", "q", None]})
    other = pd.DataFrame({"a": [np.nan, 100.0, 200.0], "c": [None, "p", "p"]})
    pre = Preprocessor("median").fit(train)
    assert pre.fill.tolist() == [2.0]  # the median of 1, 2, 10; not of every row
    assert pre.category_fill == ["q"]  # most frequent in training; 'p' is most frequent overall
    raw = pre.transform(other) * pre.scale + pre.mean
    np.testing.assert_allclose(raw[:, 0], [2.0, 100.0, 200.0])
    np.testing.assert_allclose(raw[:, 1:], [[0, 1], [1, 0], [1, 0]])  # c=p, c=q


def test_median_imputation_fills_values_missing_only_outside_the_training_rows():
    pre = Preprocessor("median").fit(pd.DataFrame({"a": [1.0, 3.0, 4.0], "c": ["p", "q", "q"]}))
    raw = pre.transform(pd.DataFrame({"a": [np.nan], "c": [None]})) * pre.scale + pre.mean
    np.testing.assert_allclose(raw, [[3.0, 0.0, 1.0]])


def test_imputation_through_a_csv_file(tmp_path):
    text = "a,c,label\n" + "".join(
        f"{'' if i % 5 == 0 else i},{'' if i % 7 == 0 else 'pq'[i % 2]},{'xy'[i % 2]}\n" for i in range(30)
    )
    path = write(tmp_path, text)
    error_of(prepare, path)
    _, _, _, parts = prepare(path, impute="median")
    assert all(np.isfinite(part).all() for part in parts.values())


# ---------------------------------------------------------------------------------------------
# One-hot encoding


def test_categories_come_from_the_training_rows_and_an_unseen_one_encodes_as_zeros():
    train = pd.DataFrame({"n": [1.0, 2.0, 3.0, 4.0], "c": ["b", "a", "b", "a"]})
    pre = Preprocessor().fit(train)
    assert pre.feature_names == ["n", "c=a", "c=b"]
    encoded = pre.transform(pd.DataFrame({"n": [1.0, 2.0], "c": ["zebra", "a"]}))
    assert np.isfinite(encoded).all()
    raw = encoded * pre.scale + pre.mean
    np.testing.assert_allclose(raw[0, 1:], [0.0, 0.0])
    np.testing.assert_allclose(raw[1, 1:], [1.0, 0.0])


def test_a_category_only_in_other_rows_gets_no_column(tmp_path):
    dataset, split, pre, parts = prepare(write(tmp_path, balanced_csv()))
    train_colours = set(dataset.features.iloc[split.train]["colour"])
    assert [name for name in pre.feature_names if name.startswith("colour=")] == [
        f"colour={value}" for value in sorted(train_colours)
    ]


def test_transform_rejects_other_columns():
    pre = Preprocessor().fit(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}))
    message = error_of(pre.transform, pd.DataFrame({"b": [1.0], "a": [2.0]}), "x.csv")
    assert message.startswith("x.csv: expected columns ['a', 'b']")


# ---------------------------------------------------------------------------------------------
# The split


def test_the_split_reproduces_sklearns_test_rows_for_breast_cancer():
    dataset = load_dataset("breast_cancer")
    y, classes = encode_labels(dataset.target, infer_task(dataset.target))
    split = split_rows(y, "binary", 0.3, 0.2, 42, False, dataset.source)
    X, target = load_breast_cancer(return_X_y=True, as_frame=True)
    _, X_test, _, _ = train_test_split(X, target, test_size=0.3, random_state=42)
    np.testing.assert_array_equal(split.test, np.sort(X_test.index.to_numpy()))
    assert len(split.test) == 171
    everything = np.concatenate([split.train, split.validation, split.test])
    np.testing.assert_array_equal(np.sort(everything), np.arange(569))


@pytest.mark.parametrize("stratify", [False, True])
def test_validation_is_a_stratified_split_of_the_rest(stratify):
    X, y = load_iris(return_X_y=True)
    split = split_rows(y, "multiclass", 0.3, 0.2, 7, stratify, "iris")
    rest, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=7, stratify=y if stratify else None)
    train, validation = train_test_split(rest, test_size=0.2, random_state=7, stratify=y[rest])
    np.testing.assert_array_equal(split.test, np.sort(test))
    np.testing.assert_array_equal(split.validation, np.sort(validation))
    np.testing.assert_array_equal(split.train, np.sort(train))
    # stratified: each class's share of the validation rows is its share of the rows it came from
    for label in np.unique(y):
        assert abs(np.mean(y[split.validation] == label) - np.mean(y[rest] == label)) <= 1 / len(validation)


def test_regression_validation_is_not_stratified():
    y = np.linspace(0.0, 1.0, 50)
    split = split_rows(y, "regression", 0.3, 0.2, 3, True, "r")
    rest, _ = train_test_split(np.arange(50), test_size=0.3, random_state=3)
    _, validation = train_test_split(rest, test_size=0.2, random_state=3)
    np.testing.assert_array_equal(split.validation, np.sort(validation))


# ---------------------------------------------------------------------------------------------
# The preprocessor is fitted on the training rows only, and survives a round trip


def test_the_preprocessor_is_fitted_on_the_training_rows_only():
    dataset = load_dataset("breast_cancer")
    y, _ = encode_labels(dataset.target, "binary")
    split = split_rows(y, "binary", 0.3, 0.2, 42, False, dataset.source)
    pre = Preprocessor().fit(dataset.features.iloc[split.train])
    train = dataset.features.iloc[split.train].to_numpy(dtype=float)
    everything = dataset.features.to_numpy(dtype=float)
    np.testing.assert_allclose(pre.mean, train.mean(axis=0))
    np.testing.assert_allclose(pre.scale, train.std(axis=0))
    assert not np.allclose(pre.mean, everything.mean(axis=0))
    assert not np.allclose(pre.scale, everything.std(axis=0))
    transformed = pre.transform(dataset.features.iloc[split.train])
    np.testing.assert_allclose(transformed.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(transformed.std(axis=0), 1, atol=1e-10)


def test_a_constant_column_is_not_divided_by_zero():
    pre = Preprocessor().fit(pd.DataFrame({"a": [5.0, 5.0, 5.0], "b": [1.0, 2.0, 3.0]}))
    assert pre.scale[0] == 1.0
    assert np.isfinite(pre.transform(pd.DataFrame({"a": [7.0], "b": [1.0]}))).all()


@pytest.mark.parametrize("impute", ["none", "median"])
def test_to_arrays_from_arrays_round_trip_gives_identical_transforms(tmp_path, impute):
    text = "a,c,d,label\n" + "".join(
        f"{'' if impute == 'median' and i % 4 == 0 else i * 1.5},{'pqr'[i % 3]},{i % 2 == 0},{'xy'[i % 2]}\n"
        for i in range(30)
    )
    dataset, split, pre, parts = prepare(write(tmp_path, text), impute=impute)
    save_npz(tmp_path / "pre.npz", pre.to_arrays())
    loaded = Preprocessor.from_arrays(load_npz(tmp_path / "pre.npz"))
    assert loaded.feature_names == pre.feature_names
    assert loaded.impute == impute
    unseen = dataset.features.iloc[:3].assign(c=["zzz", "p", None if impute == "median" else "q"])
    for frame in (dataset.features, unseen):
        np.testing.assert_array_equal(loaded.transform(frame, "x"), pre.transform(frame, "x"))


def test_from_arrays_rejects_inconsistent_arrays():
    arrays = Preprocessor().fit(pd.DataFrame({"a": [1.0, 2.0], "c": ["p", "q"]})).to_arrays()
    arrays["pre_category_counts"] = np.array([3])
    assert "inconsistent" in error_of(Preprocessor.from_arrays, arrays)


# ---------------------------------------------------------------------------------------------
# Real-world CSV files: delimiters, comment lines, unlabeled rows, stray text, identifiers


def options(**given) -> DataOptions:
    return DataOptions(**given)


def rows_csv(separator: str, n: int = 30, header: str = "a,b,colour,label", before: str = "") -> str:
    """``balanced_csv``'s rows (``a`` not counting the rows) with fields joined by ``separator``."""
    lines = [separator.join(header.split(","))]
    for i in range(n):
        lines.append(separator.join([str((i * 3) % 7), f"{(i * 7) % 5}.5", ["red", "green", "blue"][i % 3],
                                     "yes" if i % 2 else "no"]))
    return before + "\n".join(lines) + "\n"


@pytest.mark.parametrize("separator", [";", "\t", " "])
def test_the_delimiter_is_detected(tmp_path, separator):
    comma = load_dataset(str(write(tmp_path, rows_csv(","), "comma.csv")), "label")
    other = load_dataset(str(write(tmp_path, rows_csv(separator))), "label")
    assert comma.delimiter == "," and other.delimiter == separator
    pd.testing.assert_frame_equal(other.features, comma.features)
    pd.testing.assert_series_equal(other.target, comma.target)


@pytest.mark.parametrize("given, separator", [(";", ";"), ("tab", "\t"), ("\t", "\t"), ("space", " "), (",", ",")])
def test_data_delimiter_sets_it(tmp_path, given, separator):
    path = write(tmp_path, rows_csv(separator))
    dataset = load_dataset(str(path), "label", options(delimiter=given))
    assert dataset.delimiter == separator and list(dataset.features.columns) == ["a", "b", "colour"]


def test_space_separated_fields_may_be_aligned_and_quoted(tmp_path):
    text = 'x   y      label\n' + "".join(f'  {i}   "n {i % 2}"  {"pq"[i % 2]}\n' for i in range(12))
    dataset = load_dataset(str(write(tmp_path, text)), "label")
    assert dataset.delimiter == " " and list(dataset.features.columns) == ["x", "y"]
    assert dataset.features["y"].tolist()[:2] == ["n 0", "n 1"] and dataset.target.tolist()[:2] == ["p", "q"]


def test_commas_win_over_spaces_and_semicolons_inside_values(tmp_path):
    text = "mean radius,note,label\n" + "".join(f"{i}.5,a; b c {i % 3},{'xy'[i % 2]}\n" for i in range(12))
    dataset = load_dataset(str(write(tmp_path, text)), "label")
    assert dataset.delimiter == "," and list(dataset.features.columns) == ["mean radius", "note"]


@pytest.mark.parametrize("given", [",", "tab"])
def test_a_header_of_one_field_names_data_delimiter_and_the_separator_it_holds(tmp_path, given):
    path = write(tmp_path, rows_csv(";"))
    message = file_error(path, load_dataset, str(path), "label", options(delimiter=given))
    assert "single field" in message and "data.delimiter" in message and "';'" in message


def test_a_header_no_known_separator_splits_names_data_delimiter(tmp_path):
    path = write(tmp_path, rows_csv("|"))
    message = file_error(path, load_dataset, str(path), "label")
    assert "single field" in message and "data.delimiter" in message and "'a|b|colour|label'" in message


@pytest.mark.parametrize("blank", ["", "\n\n"])
def test_comment_lines_without_data_comment_name_it(tmp_path, blank):
    path = write(tmp_path, rows_csv(",", before=blank + "# exported by hand\n# 30 rows\n"))
    message = file_error(path, load_dataset, str(path), "label")
    line = blank.count("\n") + 1
    assert f"line {line} '# exported by hand'" in message and "data.comment: '#'" in message


def test_data_comment_skips_comment_lines_anywhere_and_keeps_the_files_line_numbers(tmp_path):
    plain = load_dataset(str(write(tmp_path, rows_csv(";"), "plain.csv")), "label")
    lines = rows_csv(";", before="# exported by hand\n").splitlines()
    lines.insert(5, "  # a note between rows")
    path = write(tmp_path, "\n".join(lines) + "\n")
    dataset = load_dataset(str(path), "label", options(comment="#"))
    pd.testing.assert_frame_equal(dataset.features, plain.features)
    # a stray text cell on line 12 of the file (2 comment lines before it) is reported there
    lines[11] = lines[11].replace(lines[11].split(";")[1], "oops", 1)
    path = write(tmp_path, "\n".join(lines) + "\n", "stray.csv")
    message = file_error(path, load_dataset, str(path), "label", options(comment="#"))
    assert "'b'" in message and "line 12" in message and "'oops'" in message


def test_a_header_that_starts_with_the_comment_character_is_still_a_header(tmp_path):
    dataset = load_dataset(str(write(tmp_path, rows_csv(",", header="#id,b,colour,label"))), "label")
    assert list(dataset.features.columns) == ["#id", "b", "colour"]


def test_drop_missing_target_drops_the_unlabeled_rows_and_says_how_many(tmp_path):
    text = rows_csv(",") + "5,1.5,red,\n6,2.5,red,NA\n"
    full = load_dataset(str(write(tmp_path, rows_csv(","), "full.csv")), "label")
    dataset = load_dataset(str(write(tmp_path, text)), "label", options(drop_missing_target=True))
    pd.testing.assert_frame_equal(dataset.features, full.features)
    pd.testing.assert_series_equal(dataset.target, full.target)
    (note,) = dataset.notes
    assert "dropped 2 of 32 rows" in note and "line 32" in note and "data.drop_missing_target" in note


def test_drop_missing_target_with_no_label_at_all_is_an_error(tmp_path):
    path = write(tmp_path, "a,label\n1,\n2,\n")
    message = file_error(path, load_dataset, str(path), "label", options(drop_missing_target=True))
    assert "'label'" in message and "no label" in message


def stray_csv(cell: str = "oops", row: int = 17, n: int = 40) -> str:
    """Column ``b`` holds numbers but ``cell`` on data row ``row + 1`` (line ``row + 2``)."""
    return "a,b,label\n" + "".join(
        f"{(i * 5) % 11},{cell if i == row else i * 1.5},{'xy'[i % 2]}\n" for i in range(n)
    )


def test_a_stray_text_cell_in_a_numeric_column_names_column_line_and_value(tmp_path):
    path = write(tmp_path, stray_csv())
    message = file_error(path, load_dataset, str(path), "label")
    assert "'b'" in message and "line 19" in message and "'oops'" in message and "data.coerce_numeric" in message


def test_coerce_numeric_makes_stray_text_cells_missing_values_and_the_column_stays_numeric(tmp_path):
    path = write(tmp_path, stray_csv())
    dataset = load_dataset(str(path), "label", options(coerce_numeric=True))
    b = dataset.features["b"]
    assert pd.api.types.is_float_dtype(b) and b.isna().tolist() == [i == 17 for i in range(40)]
    np.testing.assert_array_equal(b.drop(17).to_numpy(), [i * 1.5 for i in range(40) if i != 17])
    # then the imputation rule applies: an error naming data.impute, or the training median
    message = file_error(path, Preprocessor("none").fit, dataset.features, dataset.source)
    assert "'b'" in message and "data.impute" in message
    pre = Preprocessor("median").fit(dataset.features)
    assert pre.numeric == ["a", "b"] and pre.feature_names == ["a", "b"]  # never one-hot encoded


def test_a_column_with_at_most_half_numbers_is_text(tmp_path):
    # 2 numbers among 4 non-empty cells: not "mostly numbers", so categories
    text = "a,code,label\n" + "".join(f"{i},{['1', '2', 'x', 'y'][i % 4]},{'pq'[i % 2]}\n" for i in range(12))
    dataset, _, pre, _ = prepare(write(tmp_path, text))
    assert pre.categorical == ["code"] and "code=x" in pre.feature_names


def test_a_stray_text_cell_in_a_numeric_label_column_names_data_target(tmp_path):
    text = "a,price,extra\n" + "".join(f"{i % 4},{'?' if i == 5 else i * 2.5},{i % 3}\n" for i in range(30))
    path = write(tmp_path, text)
    message = file_error(path, load_dataset, str(path), "price")
    assert "'price' (data.target)" in message and "line 7" in message and "'?'" in message
    dataset = load_dataset(str(path), "price", options(coerce_numeric=True, drop_missing_target=True))
    assert len(dataset.target) == 29 and infer_task(dataset.target) == "regression"


def id_csv(n: int = 40) -> str:
    return "id,name,day,size,label\n" + "".join(
        f"{1000 + i},person {i},2024-01-{i % 28 + 1:02d}T{i:02d}:00,{'SML'[i % 3]},{'xy'[i % 2]}\n"
        for i in range(n)
    )


def test_columns_unique_per_row_get_one_warning_each(tmp_path):
    dataset = load_dataset(str(write(tmp_path, id_csv())), "label")
    warned = {note.split("'")[1]: note for note in dataset.notes}
    assert set(warned) == {"id", "name", "day"}  # size has 3 values: a feature
    for note in warned.values():
        assert note.startswith(f"warning: {tmp_path / 'data.csv'}: ") and "data.drop_columns" in note
        assert len(note.splitlines()) == 1


def test_data_drop_columns_removes_columns_first(tmp_path):
    dataset = load_dataset(str(write(tmp_path, id_csv())), "label", options(drop_columns=("id", "name", "day")))
    assert list(dataset.features.columns) == ["size"] and dataset.notes == []
    breast = load_dataset("breast_cancer", None, options(drop_columns=("mean radius",)))
    assert "mean radius" not in breast.features.columns and breast.features.shape[1] == 29


def test_an_unknown_name_in_drop_columns_is_an_error_with_a_suggestion(tmp_path):
    path = write(tmp_path, id_csv())
    message = file_error(path, load_dataset, str(path), "label", options(drop_columns=("nmae",)))
    assert "data.drop_columns" in message and "'nmae'" in message and "did you mean 'name'" in message
    message = file_error(path, load_dataset, str(path), "label", options(drop_columns=("label",)))
    assert "data.drop_columns" in message and "data.target" in message
    message = error_of(load_dataset, "iris", None, options(drop_columns=("petal",)))
    assert message.startswith("iris: data.drop_columns: no column 'petal'")


def test_a_text_column_with_more_categories_than_max_categories_is_an_error(tmp_path):
    n = 100_000
    text = "city,label\n" + "".join(f"c{i},{i % 2}\n" for i in range(n))
    path = write(tmp_path, text)
    message = file_error(path, load_dataset, str(path), "label")
    assert "'city'" in message and f"{n} distinct" in message and "data.max_categories (100)" in message
    assert "data.drop_columns" in message


@pytest.mark.parametrize("limit, ok", [(2, False), (3, True)])
def test_max_categories_is_the_most_a_text_column_may_have(tmp_path, limit, ok):
    path = write(tmp_path, rows_csv(","))  # colour: red, green, blue
    if ok:
        assert load_dataset(str(path), "label", options(max_categories=limit)).features.shape == (30, 3)
    else:
        assert "data.max_categories (2)" in file_error(path, load_dataset, str(path), "label",
                                                       options(max_categories=limit))


def test_a_directory_is_reported_as_a_directory(tmp_path):
    (tmp_path / "folder").mkdir()
    message = file_error(tmp_path / "folder", load_dataset, str(tmp_path / "folder"), "label")
    assert "directory" in message and "not found" not in message


def counts_csv() -> str:
    """Whole-number labels (counts 0 to 14), several of them on one row only."""
    return "a,count\n" + "".join(f"{i},{min(i, 14) if i < 14 else i % 3}\n" for i in range(40))


def test_a_failed_stratified_split_of_whole_number_labels_suggests_a_regression(tmp_path):
    dataset = load_dataset(str(write(tmp_path, counts_csv())), "count")
    task = infer_task(dataset.target)
    y, classes = encode_labels(dataset.target, task)
    assert task == "multiclass"
    message = file_error(dataset.source, split_rows, y, task, 0.3, 0.2, 42, False, dataset.source, "count", classes)
    assert "stratified" in message and "data.task: regression" in message
    header, rows = counts_csv().split("\n", 1)
    text = header + "\n" + rows.replace(",", ",k")  # the same labels as text (k0, k1, ...): no such hint
    dataset = load_dataset(str(write(tmp_path, text, "text.csv")), "count")
    y, classes = encode_labels(dataset.target, "multiclass")
    message = file_error(dataset.source, split_rows, y, "multiclass", 0.3, 0.2, 42, False, dataset.source,
                         "count", classes)
    assert "stratified" in message and "regression" not in message
