"""Typed wire lines encode byte for byte as the dict-built lines they replaced.

The expected text below was produced by the previous implementation (dicts in sharing/routes.py
and sharing/protocol.py) from the same snapshot and changes: both response formats, the change
lines, a listing page, an error, and a non-ASCII value (escaped, never raw).
"""

from sharing import protocol
from sharing.delta import Change, DataFile, Snapshot
from sharing.reads import stable_id

SNAP = Snapshot(
    version=3,
    table_id="t",
    schema_string='{"type":"struct"}',
    partition_columns=["p"],
    configuration={"delta.enableChangeDataFeed": "true", "x": "\u00e9"},
    min_reader_version=3,
    min_writer_version=7,
    reader_features=["columnMapping"],
    writer_features=[],
    created_time=123,
    files=[
        DataFile("a.parquet", 10, 5, 2, '{"numRecords":2}', {"p": "1"}),
        DataFile("b.parquet", 11, 6, None, None, {}),
    ],
)
CHANGES = [
    Change(
        "add",
        1,
        9,
        {
            "path": "a",
            "size": 3,
            "partitionValues": {"p": None},
            "stats": "s",
            "tags": {"x": "y"},
            "dataChange": True,
        },
    ),
    Change("remove", 1, 9, {"path": "b", "size": 4, "dataChange": True}),
    Change("cdc", 2, 9, {"path": "c", "size": 5, "partitionValues": {}}),
]
EXPECTED = {
    "parquet": '{"protocol":{"minReaderVersion":1}}\n{"metaData":{"id":"tid","format":{"provider":"parquet"},"schemaString":"{\\"type\\":\\"struct\\"}","partitionColumns":["p"],"configuration":{"enableChangeDataFeed":"true"},"version":3,"numFiles":2,"size":21}}\n{"file":{"url":"Ua.parquet","id":"23bd4833-82f8-587b-b227-c440c0952e66","partitionValues":{"p":"1"},"size":10,"expirationTimestamp":77,"stats":"{\\"numRecords\\":2}"}}\n{"file":{"url":"Ub.parquet","id":"eb8baeeb-4c47-574f-9160-06204bc84ae0","partitionValues":{},"size":11,"expirationTimestamp":77}}\n{"add":{"url":"Ua","id":"db79674b-c467-54d6-a916-fbfbc1a9c6e9","partitionValues":{"p":null},"size":3,"timestamp":9,"version":1,"expirationTimestamp":77,"stats":"s"}}\n{"remove":{"url":"Ub","id":"97da1827-1b62-5c37-9ced-18daf438a777","partitionValues":{},"size":4,"timestamp":9,"version":1,"expirationTimestamp":77}}\n{"cdf":{"url":"Uc","id":"d3b0a1a2-72ad-5917-a886-c48ce58d80d8","partitionValues":{},"size":5,"timestamp":9,"version":2,"expirationTimestamp":77}}\n',
    "delta": '{"protocol":{"deltaProtocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["columnMapping"]}}}\n{"metaData":{"deltaMetadata":{"id":"tid","format":{"provider":"parquet","options":{}},"schemaString":"{\\"type\\":\\"struct\\"}","partitionColumns":["p"],"configuration":{"delta.enableChangeDataFeed":"true","x":"\\u00e9"},"createdTime":123},"version":3,"numFiles":2,"size":21}}\n{"file":{"id":"23bd4833-82f8-587b-b227-c440c0952e66","deltaSingleAction":{"add":{"path":"Ua.parquet","partitionValues":{"p":"1"},"size":10,"modificationTime":5,"dataChange":true,"stats":"{\\"numRecords\\":2}"}},"expirationTimestamp":77}}\n{"file":{"id":"eb8baeeb-4c47-574f-9160-06204bc84ae0","deltaSingleAction":{"add":{"path":"Ub.parquet","partitionValues":{},"size":11,"modificationTime":6,"dataChange":true}},"expirationTimestamp":77}}\n{"file":{"id":"db79674b-c467-54d6-a916-fbfbc1a9c6e9","deltaSingleAction":{"add":{"path":"Ua","size":3,"partitionValues":{"p":null},"stats":"s","dataChange":true}},"version":1,"timestamp":9,"expirationTimestamp":77}}\n{"file":{"id":"97da1827-1b62-5c37-9ced-18daf438a777","deltaSingleAction":{"remove":{"path":"Ub","size":4,"dataChange":true,"partitionValues":{}}},"version":1,"timestamp":9,"expirationTimestamp":77}}\n{"file":{"id":"d3b0a1a2-72ad-5917-a886-c48ce58d80d8","deltaSingleAction":{"cdc":{"path":"Uc","size":5,"partitionValues":{}}},"version":2,"timestamp":9,"expirationTimestamp":77}}\n',
    "page": '{"items":[{"name":"n","id":"i"}],"nextPageToken":"x"}',
    "tables": '{"items":[{"name":"n","schema":"s","share":"sh","id":"i"}]}',
    "error": '{"errorCode":"E","message":"m"}',
}


def test_table_lines_in_both_formats():
    for fmt in ("parquet", "delta"):
        lines: list[protocol.Line] = list(protocol.head(fmt, "tid", SNAP))
        lines += [
            protocol.file_line(fmt, stable_id(f"tid/{f.path}"), f, "U" + f.path, 77)
            for f in SNAP.files
        ]
        lines += [
            protocol.change_line(fmt, stable_id(f"tid/{c.path}"), c, "U" + c.path, 77)
            for c in CHANGES
        ]
        assert protocol.ndjson(lines).decode() == EXPECTED[fmt], fmt


def test_listings_and_errors():
    page = protocol.SharesPage([protocol.Share("n", "i")], "x")
    assert protocol.dumps(page).decode() == EXPECTED["page"]
    tables = protocol.TablesPage([protocol.Table("n", "s", "sh", "i")])
    assert protocol.dumps(tables).decode() == EXPECTED["tables"]
    assert protocol.dumps(protocol.ErrorResponse("E", "m")).decode() == EXPECTED["error"]
