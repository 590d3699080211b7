"""Drives a fake cloud with the provider's own Python client from PyPI.

Verda publishes no API document and RunPod none for its GraphQL API, so
their fakes are held to what the official clients (`verda`, `runpod`)
send and read: each scenario makes the client's calls against the fake
and prints one JSON line of what the client made of the answers, which
tests/it/official_clients.rs checks. A client that cannot read an answer
raises, and the scenario exits non-zero with the traceback.

    python official_clients.py verda  <base url> <client id> <client secret> <public key>
    python official_clients.py runpod <base url> <api key> <gpu type id>
"""

import json
import sys


def verda(url, client_id, secret, public_key):
    from verda import VerdaClient

    client = VerdaClient(client_id, secret, base_url=url + "/v1")
    types = client.instance_types.get()
    locations = client.locations.get()
    gpu = next(t for t in types if t.gpu["number_of_gpus"] > 0)
    location = locations[0]["code"]
    availabilities = client.instances.get_availabilities()
    available = client.instances.is_available(gpu.instance_type, location_code=location)
    key = client.ssh_keys.create("official-client", public_key)
    keys = client.ssh_keys.get()
    made = client.instances.create(
        instance_type=gpu.instance_type,
        image="ubuntu-22.04-cuda-12.4-docker",
        hostname="official-client",
        description="official-client",
        ssh_key_ids=[key.id],
        location=location,
        wait_for_status=None,
    )
    listed = client.instances.get()
    client.instances.action(made.id, "delete")
    print(json.dumps({
        "types": sorted(t.instance_type for t in types),
        "prices": {t.instance_type: t.price_per_hour for t in types},
        "locations": [l["code"] for l in locations],
        "availabilities": {a["location_code"]: a["availabilities"] for a in availabilities},
        "available": available,
        "key": key.id,
        "keys": [k.id for k in keys],
        "instance": {"id": made.id, "instance_type": made.instance_type,
                     "location": made.location, "status": made.status,
                     "ssh_key_ids": made.ssh_key_ids},
        "listed": [i.id for i in listed],
    }))


def runpod_graphql(url, api_key, gpu_id):
    import os

    # The client reads its base URL from the environment on each query.
    os.environ["RUNPOD_API_BASE_URL"] = url
    import runpod

    runpod.api_key = api_key
    gpus = runpod.get_gpus()
    one = runpod.get_gpu(gpu_id, 2)
    print(json.dumps({"gpus": gpus, "one": one}))


if __name__ == "__main__":
    scenario, args = sys.argv[1], sys.argv[2:]
    {"verda": verda, "runpod": runpod_graphql}[scenario](*args)
