"""Issue 19's labelling bugs through the unmodified Encord SDK: numeric attributes, and the options
that used to be ignored (``data_title_like``, ``include_client_metadata``, ``include_signed_url``)
now implemented, and options corral does not implement refused by name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from encord.orm.dataset import LongPollingStatus, StorageLocation

from tests.compat.conftest import IMAGES, Bucket, images_manifest, png


def numeric_structure() -> Any:
    from encord.objects import OntologyStructure, Shape
    from encord.objects.attributes import NumericAttribute

    s = OntologyStructure()
    car = s.add_object("car", Shape.BOUNDING_BOX)
    car.add_attribute(NumericAttribute, "speed")
    s.add_classification().add_attribute(NumericAttribute, "count")
    return s


def labelled_project(sdk: Any, bucket: Bucket) -> Any:
    folder = sdk.create_storage_folder("imgs")
    job = folder.add_private_data_to_folder_start(bucket.integration_id, images_manifest(bucket))
    assert folder.add_private_data_to_folder_get_result(job, timeout_seconds=120).status == LongPollingStatus.DONE
    ds = sdk.get_dataset(sdk.create_dataset("cars", StorageLocation.AWS).dataset_hash)
    ds.link_items([i.uuid for i in folder.list_items()])
    ontology = sdk.create_ontology("numbers", structure=numeric_structure())
    return sdk.get_project(sdk.create_project("counting", [ds.dataset_hash], ontology_hash=ontology.ontology_hash))


def test_numeric_attributes_are_written_and_read(sdk: Any, s3: Bucket) -> None:
    from encord.objects.attributes import NumericAttribute
    from encord.objects.coordinates import BoundingBoxCoordinates

    project = labelled_project(sdk, s3)
    back = sdk.get_ontology(project.ontology_hash).structure
    speed = back.get_child_by_title("speed")
    assert isinstance(speed, NumericAttribute)  # read back as the SDK's numeric type
    row = next(r for r in project.list_label_rows_v2() if r.data_title == "a.png")
    row.initialise_labels()
    s = project.ontology_structure
    box = s.get_child_by_title("car").create_instance()
    box.set_for_frames(BoundingBoxCoordinates(height=0.2, width=0.2, top_left_x=0.1, top_left_y=0.1), frames=0)
    box.set_answer(42.5, attribute=s.get_child_by_title("speed"))
    row.add_object_instance(box)
    count = s.classifications[0].create_instance()
    count.set_answer(7)
    count.set_for_frames(frames=0)
    row.add_classification_instance(count)
    row.save()

    again = next(r for r in sdk.get_project(project.project_hash).list_label_rows_v2() if r.data_title == "a.png")
    again.initialise_labels()
    [obj] = again.get_object_instances()
    assert obj.get_answer(s.get_child_by_title("speed")) == 42.5
    assert again.get_classification_instances()[0].get_answer() == 7


def test_title_like_client_metadata_and_signed_urls(sdk: Any, s3: Bucket) -> None:
    project = labelled_project(sdk, s3)
    assert sorted(r.data_title for r in project.list_label_rows_v2()) == ["a.png", "b.png", "c.png"]
    assert [r.data_title for r in project.list_label_rows_v2(data_title_like="%b.p%")] == ["b.png"]
    assert sorted(r.data_title for r in project.list_label_rows_v2(data_title_like="_.PNG")) == [
        "a.png", "b.png", "c.png"]  # SQL LIKE, any case
    assert project.list_label_rows_v2(data_title_like="z%") == []
    # "\\" escapes, as PostgreSQL reads LIKE patterns (SQLite took the backslash literally)
    assert [r.data_title for r in project.list_label_rows_v2(data_title_like="\\b%")] == ["b.png"]
    assert project.list_label_rows_v2(data_title_like="b\\_png") == []

    rows = project.list_label_rows_v2(include_client_metadata=True)
    assert {r.data_title: r.client_metadata for r in rows} == {
        "a.png": {"camera": "c0"}, "b.png": {"camera": "c1"}, "c.png": {"camera": "c2"}}
    assert all(r.client_metadata is None for r in project.list_label_rows_v2())

    row = next(r for r in project.list_label_rows_v2() if r.data_title == "c.png")
    row.initialise_labels(include_signed_url=True)  # a new label row (PUT)
    assert row.data_link.startswith("http") and row.data_link != s3.url("img/c.png")
    assert httpx.get(row.data_link).content == png(*IMAGES["img/c.png"])
    again = next(r for r in project.list_label_rows_v2() if r.data_title == "c.png")
    again.initialise_labels(include_signed_url=True)  # an existing one (GET)
    assert httpx.get(again.data_link).content == png(*IMAGES["img/c.png"])
    plain = next(r for r in project.list_label_rows_v2() if r.data_title == "c.png")
    plain.initialise_labels()
    assert plain.data_link == s3.url("img/c.png")

    hour = timedelta(hours=1)
    assert [r.data_title for r in project.list_label_rows_v2(edited_after=datetime.now(UTC) - hour)] == ["c.png"]
    assert project.list_label_rows_v2(edited_before=datetime.now(UTC) - hour) == []


def test_label_status_filter(sdk: Any, s3: Bucket) -> None:
    from encord.exceptions import InvalidArgumentsError
    from encord.orm.label_row import AnnotationTaskStatus, LabelStatus

    project = labelled_project(sdk, s3)
    next(r for r in project.list_label_rows_v2() if r.data_title == "b.png").initialise_labels()
    assert [r.data_title for r in project.list_label_rows_v2(label_statuses=[LabelStatus.LABEL_IN_PROGRESS])] == [
        "b.png"]
    assert sorted(r.data_title for r in project.list_label_rows_v2(label_statuses=[LabelStatus.NOT_LABELLED])) == [
        "a.png", "c.png"]
    assert project.list_label_rows_v2(label_statuses=[]) == []  # none wanted: none, as data_hashes=[]
    with pytest.raises(InvalidArgumentsError, match="'QUEUED' .an annotation task status.* not a label status"):
        project.list_label_rows_v2(label_statuses=[AnnotationTaskStatus.QUEUED])


def test_unsupported_options_are_refused_by_name(sdk: Any, s3: Bucket) -> None:
    from encord.exceptions import InvalidArgumentsError

    project = labelled_project(sdk, s3)
    from encord.orm.label_row import ShadowDataState

    with pytest.raises(InvalidArgumentsError, match="shadow_data_state='ALL_DATA'"):
        project.list_label_rows_v2(shadow_data_state=ShadowDataState.ALL_DATA)
    with pytest.raises(InvalidArgumentsError, match="branch_name"):
        project.list_label_rows_v2(branch_name="experiment")
    row = project.list_label_rows_v2()[0]
    row.initialise_labels()
    with pytest.raises(InvalidArgumentsError, match="include_reviews=True"):
        row.initialise_labels(include_reviews=True, overwrite=True)
