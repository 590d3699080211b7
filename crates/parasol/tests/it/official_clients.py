"""Drives a fake cloud with the provider's own Python client from PyPI.

Verda publishes no API document and RunPod none for its GraphQL API, so
their fakes are held to what the official clients (`verda`, `runpod`)
send and read: each scenario makes the client's calls against the fake
and prints one JSON line of what the client made of the answers, which
tests/it/official_clients.rs checks. A client that cannot read an answer
raises, and the scenario exits non-zero with the traceback.

    python official_clients.py verda  <base url> <client id> <client secret> <public key>
    python official_clients.py runpod <base url> <api key> <gpu type id>
    python official_clients.py azure.mgmt.compute <base url> <tenant> <client id> <client secret> <subscription> <public key>

Azure publishes a document, and the Azure fake is held to it; Microsoft's
own management clients (`azure-mgmt-compute`, `azure-mgmt-network`) drive
it here too, so the fake answers what the clients read.
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
    script = client.startup_scripts.create("official-client", "#!/bin/sh\necho hi\n")
    scripts = client.startup_scripts.get()
    made = client.instances.create(
        instance_type=gpu.instance_type,
        image="ubuntu-22.04-cuda-12.4-docker",
        hostname="official-client",
        description="official-client",
        ssh_key_ids=[key.id],
        location=location,
        startup_script_id=script.id,
        wait_for_status=None,
    )
    listed = client.instances.get()
    client.instances.action(made.id, "delete")
    client.startup_scripts.delete([script.id])
    scripts_left = client.startup_scripts.get()
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
        "script": script.id,
        "scripts": [{"id": s.id, "name": s.name, "script": s.script} for s in scripts],
        "scripts_left": [s.id for s in scripts_left],
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


def azure_compute(url, tenant, client_id, secret, subscription, public_key):
    import time
    import urllib.parse
    import urllib.request

    from azure.core.credentials import AccessToken
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.compute import models as cm
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.network import models as nm

    # The client-credentials grant, as azure-identity makes it (which
    # itself insists on an https authority, so it cannot reach the fake).
    form = urllib.parse.urlencode({
        "grant_type": "client_credentials", "client_id": client_id,
        "client_secret": secret, "scope": "https://management.azure.com/.default",
    }).encode()
    with urllib.request.urlopen(f"{url}/{tenant}/oauth2/v2.0/token", form) as r:
        token = json.load(r)

    class Credential:
        def get_token(self, *scopes, **kwargs):
            return AccessToken(token["access_token"], int(time.time()) + token["expires_in"])

    # The fake is plain HTTP; the clients send bearer tokens over TLS only
    # unless told otherwise per call.
    http = {"enforce_https": False}
    lro = {**http, "polling_interval": 0}
    compute = ComputeManagementClient(Credential(), subscription, base_url=url)
    network = NetworkManagementClient(Credential(), subscription, base_url=url)
    group = "official-client"
    req = urllib.request.Request(
        f"{url}/subscriptions/{subscription}/resourcegroups/{group}?api-version=2021-04-01",
        data=json.dumps({"location": "eastus"}).encode(), method="PUT",
        headers={"Authorization": f"Bearer {token['access_token']}",
                 "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()

    skus = list(compute.resource_skus.list(filter="location eq 'eastus'", **http))
    nsg = network.network_security_groups.begin_create_or_update(
        group, "nsg", nm.NetworkSecurityGroup(location="eastus"), **lro).result()
    vnet = network.virtual_networks.begin_create_or_update(group, "vnet", nm.VirtualNetwork(
        location="eastus",
        address_space=nm.AddressSpace(address_prefixes=["10.0.0.0/16"]),
        subnets=[nm.Subnet(name="s", address_prefix="10.0.0.0/24",
                           network_security_group=nm.NetworkSecurityGroup(id=nsg.id))],
    ), **lro).result()
    ip = network.public_ip_addresses.begin_create_or_update(group, "vm-ip", nm.PublicIPAddress(
        location="eastus", sku=nm.PublicIPAddressSku(name="Standard"),
        public_ip_allocation_method="Static"), **lro).result()
    nic = network.network_interfaces.begin_create_or_update(group, "vm-nic", nm.NetworkInterface(
        location="eastus",
        ip_configurations=[nm.NetworkInterfaceIPConfiguration(
            name="primary", subnet=nm.Subnet(id=vnet.id + "/subnets/s"),
            public_ip_address=nm.PublicIPAddress(id=ip.id, delete_option="Delete"))],
    ), **lro).result()
    vm = compute.virtual_machines.begin_create_or_update(group, "vm", cm.VirtualMachine(
        location="eastus", zones=["1"],
        hardware_profile=cm.HardwareProfile(vm_size="Standard_NC24ads_A100_v4"),
        storage_profile=cm.StorageProfile(
            image_reference=cm.ImageReference(publisher="microsoft-dsvm", offer="ubuntu-hpc",
                                              sku="2204", version="latest"),
            os_disk=cm.OSDisk(name="vm-osdisk", create_option="FromImage", delete_option="Delete")),
        os_profile=cm.OSProfile(
            computer_name="vm", admin_username="azureuser",
            linux_configuration=cm.LinuxConfiguration(
                disable_password_authentication=True,
                ssh=cm.SshConfiguration(public_keys=[cm.SshPublicKey(
                    path="/home/azureuser/.ssh/authorized_keys", key_data=public_key)]))),
        network_profile=cm.NetworkProfile(network_interfaces=[cm.NetworkInterfaceReference(
            id=nic.id, primary=True, delete_option="Delete")]),
        priority="Spot", eviction_policy="Delete", billing_profile=cm.BillingProfile(max_price=-1),
    ), **lro).result()
    time.sleep(0.5)
    got = compute.virtual_machines.get(group, "vm", **http)
    view = compute.virtual_machines.instance_view(group, "vm", **http)
    listed = list(compute.virtual_machines.list_all(**http))
    address = network.public_ip_addresses.get(group, "vm-ip", **http).ip_address
    compute.virtual_machines.begin_restart(group, "vm", **lro).result()
    disk = compute.disks.begin_create_or_update(group, "data", cm.Disk(
        location="eastus", sku=cm.DiskSku(name="Premium_LRS"),
        creation_data=cm.CreationData(create_option="Empty"), disk_size_gb=10), **lro).result()
    disks = [d.name for d in compute.disks.list(**http)]
    compute.disks.begin_delete(group, "data", **lro).result()
    compute.virtual_machines.begin_delete(group, "vm", **lro).result()
    print(json.dumps({
        "skus": {s.name: {c.name: c.value for c in (s.capabilities or [])}
                 for s in skus if s.resource_type == "virtualMachines"},
        "zones": {s.name: [z for i in (s.location_info or []) for z in (i.zones or [])]
                  for s in skus if s.resource_type == "virtualMachines"},
        "vm": vm.name, "priority": got.priority, "size": got.hardware_profile.vm_size,
        "codes": [s.code for s in view.statuses or []],
        "listed": [v.name for v in listed], "address": address,
        "disk": disk.name, "disk_size": disk.disk_size_gb, "disks": disks,
    }))


if __name__ == "__main__":
    scenario, args = sys.argv[1], sys.argv[2:]
    {"verda": verda, "runpod": runpod_graphql, "azure.mgmt.compute": azure_compute}[scenario](*args)
