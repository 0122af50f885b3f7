#!/usr/bin/env python3
"""Interop checks with the official azure-storage-blob client (tests only).

    azure_sdk_interop.py read  ENDPOINT ACCOUNT KEY CONTAINER PREFIX
        Lists PREFIX (flat, and with delimiter "/" under PREFIX/generations/), downloads every blob and prints JSON:
        {"blobs": {name: {"size": n, "sha256": hex, "created": iso}}, "generations": [prefix, ...]}
    azure_sdk_interop.py write-snapshot ENDPOINT ACCOUNT KEY CONTAINER PREFIX GENERATION INDEX DB_PATH
        Compresses DB_PATH with lz4.frame (4 MiB blocks, content checksum) and uploads it as
        PREFIX/generations/GENERATION/snapshots/<INDEX as %016x>.snapshot.lz4; prints the blob name.
"""
import hashlib, json, sys

import lz4.frame
from azure.storage.blob import BlobServiceClient


def container(endpoint, account, key, name):
    conn = f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={endpoint};"
    return BlobServiceClient.from_connection_string(conn).get_container_client(name)


def read(endpoint, account, key, cname, prefix):
    c = container(endpoint, account, key, cname)
    base = (prefix + "/") if prefix else ""
    out = {"blobs": {}, "generations": []}
    for b in c.list_blobs(name_starts_with=base, results_per_page=3):
        data = c.download_blob(b.name).readall()
        out["blobs"][b.name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                "listed_size": b.size, "created": b.creation_time.isoformat() if b.creation_time else None}
    for item in c.walk_blobs(name_starts_with=base + "generations/", delimiter="/"):
        out["generations"].append(item.name)
    print(json.dumps(out))


def write_snapshot(endpoint, account, key, cname, prefix, generation, index, db_path):
    c = container(endpoint, account, key, cname)
    with open(db_path, "rb") as f:
        data = f.read()
    frame = lz4.frame.compress(data, block_size=lz4.frame.BLOCKSIZE_MAX4MB, content_checksum=True)
    name = ((prefix + "/") if prefix else "") + "generations/%s/snapshots/%016x.snapshot.lz4" % (generation, int(index))
    c.upload_blob(name, frame, overwrite=True)
    print(name)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "read":
        read(*args)
    elif cmd == "write-snapshot":
        write_snapshot(*args)
    else:
        sys.exit("unknown command " + cmd)
