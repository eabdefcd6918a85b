"""The official Python Tea SDK (alibabacloud_iot20180120, signature V3) against the hub's
OpenAPI: product, thing model, thing data, shadow and topology actions. Every answer is parsed
by the SDK's own models, then each field is checked against the model's declared type (str,
int, bool, list, nested model), as strictly as the Tea TypeScript `cast` does.

Usage: tea_actions.py PORT ACCESS_KEY_ID ACCESS_KEY_SECRET PK DN GW_PK GW_DN TSL_PK
Prints one JSON line: the answers (to_map) and the type mismatches found.
"""

import inspect
import json
import sys
import typing

from alibabacloud_iot20180120 import models
from alibabacloud_iot20180120.client import Client
from alibabacloud_tea_openapi.models import Config

port, ak, secret, pk, dn, gw_pk, gw_dn, tsl_pk = sys.argv[1:9]

client = Client(
    Config(access_key_id=ak, access_key_secret=secret, endpoint=f"127.0.0.1:{port}", protocol="http")
)

mismatches = []


def check(model, path):
    """Every field of `model` has its declared type."""
    params = inspect.signature(type(model).__init__).parameters
    for name, p in params.items():
        if name == "self":
            continue
        value = getattr(model, name, None)
        if value is None:
            continue
        check_value(value, p.annotation, f"{path}.{name}")


def check_value(value, ann, path):
    origin = typing.get_origin(ann)
    if origin in (list, typing.List):
        if not isinstance(value, list):
            mismatches.append(f"{path}: list expected, got {value!r}")
            return
        (inner,) = typing.get_args(ann)
        for i, v in enumerate(value):
            check_value(v, inner, f"{path}[{i}]")
    elif ann is str:
        if not isinstance(value, str):
            mismatches.append(f"{path}: str expected, got {value!r}")
    elif ann is bool:
        if not isinstance(value, bool):
            mismatches.append(f"{path}: bool expected, got {value!r}")
    elif ann is int:
        if isinstance(value, bool) or not isinstance(value, int):
            mismatches.append(f"{path}: int expected, got {value!r}")
    elif inspect.isclass(ann) and ann.__module__ == models.__name__:
        if not isinstance(value, ann):
            mismatches.append(f"{path}: {ann.__name__} expected, got {value!r}")
        else:
            check(value, path)


answers = {}


def call(name, method, request):
    body = method(request).body
    check(body, name)
    answers[name] = body.to_map()
    return body


tsl = json.dumps(
    {
        "properties": [
            {
                "identifier": "Temperature",
                "name": "Temp",
                "accessMode": "rw",
                "dataType": {"type": "float", "specs": {"min": "-40", "max": "85", "unit": "C"}},
            }
        ],
        "events": [],
        "services": [],
    }
)

call(
    "CreateProduct",
    client.create_product,
    models.CreateProductRequest(product_name="tea product", node_type=0, data_format=1, publish_auto=True),
)
call("QueryProduct", client.query_product, models.QueryProductRequest(product_key=pk))
call(
    "ImportThingModelTsl",
    client.import_thing_model_tsl,
    models.ImportThingModelTslRequest(product_key=tsl_pk, tsl_str=tsl),
)
call(
    "GetThingModelTsl",
    client.get_thing_model_tsl,
    models.GetThingModelTslRequest(product_key=tsl_pk, simple=False),
)
call(
    "QueryDevicePropertyStatus",
    client.query_device_property_status,
    models.QueryDevicePropertyStatusRequest(product_key=pk, device_name=dn),
)
call(
    "UpdateDeviceShadow",
    client.update_device_shadow,
    models.UpdateDeviceShadowRequest(
        product_key=pk,
        device_name=dn,
        shadow_message=json.dumps({"method": "update", "state": {"desired": {"color": "blue"}}, "version": 1}),
        delta_update=True,
    ),
)
call(
    "GetDeviceShadow",
    client.get_device_shadow,
    models.GetDeviceShadowRequest(product_key=pk, device_name=dn),
)
call(
    "GetThingTopo",
    client.get_thing_topo,
    models.GetThingTopoRequest(product_key=gw_pk, device_name=gw_dn, page_no=1, page_size=10),
)
call(
    "BatchRegisterDevice",
    client.batch_register_device,
    models.BatchRegisterDeviceRequest(product_key=pk, count=2),
)
apply_id = answers["BatchRegisterDevice"]["Data"]["ApplyId"]
call(
    "QueryPageByApplyId",
    client.query_page_by_apply_id,
    models.QueryPageByApplyIdRequest(apply_id=apply_id, current_page=1, page_size=10),
)

# A business error comes back as the body (HTTP 200), as the SDK expects.
missing = client.query_product(models.QueryProductRequest(product_key="nope12345ab")).body
answers["QueryProductMissing"] = missing.to_map()

print(json.dumps({"answers": answers, "mismatches": mismatches}))
