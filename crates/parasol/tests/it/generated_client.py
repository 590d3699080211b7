"""Drives a full instance lifecycle through a client generated from the
official Shadeform document by openapi-python-client, as a user would.

Run by tests/it/generated_client.rs: generated_client.py BASE_URL API_KEY
SSH_PUBLIC_KEY, with the generated package `shadeform_client` importable.
Every answer goes through the generated models' from_dict, which raises on
a value the document does not allow (such as a null ip or deleted_at).
"""

import sys
import time

from shadeform_client import AuthenticatedClient
from shadeform_client.api.instances import (
    instances as instances_list,
    instances_create,
    instances_delete,
    instances_info,
    instances_types,
)
from shadeform_client.api.ssh_keys import ssh_keys, ssh_keys_add
from shadeform_client.models import AddSshKeyRequest, CreateRequest
from shadeform_client.types import Unset

base, key, public_key = sys.argv[1:4]
client = AuthenticatedClient(
    base_url=base + "/v1",
    token=key,
    prefix="",
    auth_header_name="X-API-KEY",
    raise_on_unexpected_status=True,
)
# For answers the generated code has no model for (GET /instances) or
# treats as unexpected (the 404 after deletion).
lenient = AuthenticatedClient(
    base_url=base + "/v1", token=key, prefix="", auth_header_name="X-API-KEY"
)


def wait(what, check, seconds=30):
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


types = instances_types.sync(client=client, cloud="massedcompute", available=True)
assert types is not None and types.instance_types, types
assert any(t.shade_instance_type == "A6000" for t in types.instance_types)

added = ssh_keys_add.sync(
    client=client, body=AddSshKeyRequest(name="generated", public_key=public_key)
)
keys = ssh_keys.sync(client=client)
assert any(k.id == added.id for k in keys.ssh_keys), keys

created = instances_create.sync(
    client=client,
    body=CreateRequest(
        cloud="massedcompute",
        region="us-central-1",
        shade_instance_type="A6000",
        shade_cloud=True,
        name="generated-box",
        ssh_key_id=added.id,
    ),
)
iid = str(created.id)

seen = set()


def active():
    info = instances_info.sync(id=iid, client=client)
    seen.add(info.status.value)
    if info.status.value != "active":
        # Before activation: no address yet, and no activation time.
        assert info.ip == "", info.ip
        assert isinstance(info.active_at, Unset), info.active_at
        return None
    return info


info = wait("active", active)
assert info.ip, info
assert not isinstance(info.active_at, Unset)
assert info.deleted_at.year == 1, info.deleted_at
assert info.name == "generated-box"
assert str(info.ssh_key_id) == added.id
assert info.additional_properties.get("os") == info.configuration.os

# The generator omits GET /instances' model (it cannot resolve the
# document's Instance schema); the raw answer must still be the list.
listed = instances_list.sync_detailed(client=lenient)
assert listed.status_code == 200
assert iid in listed.content.decode()

deleted = instances_delete.sync_detailed(id=iid, client=client)
assert deleted.status_code == 200, deleted


def gone():
    r = instances_info.sync_detailed(id=iid, client=lenient)
    return r.status_code == 404


wait("deleted", gone)
print("lifecycle ok", iid, sorted(seen))
