"""The official Python core SDK (aliyun-python-sdk-core + aliyun-python-sdk-iot, signature V1,
POST) against the hub's OpenAPI, configured as docs/backend.md shows: only the endpoint and the
access key differ from a cloud backend.

    python openapi_core.py HOST:PORT ACCESS_KEY_ID ACCESS_KEY_SECRET 'ACTION' 'JSON_PARAMS'

Prints one JSON line: {"ok": <the answer>} or {"error": {"type", "code", "message", "status"}}.
"""
import importlib
import json
import sys

from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException

endpoint, ak, secret, action, params = sys.argv[1:6]
client = AcsClient(ak, secret, "cn-shanghai", timeout=20)
module = importlib.import_module("aliyunsdkiot.request.v20180120.%sRequest" % action)
request = getattr(module, "%sRequest" % action)()
request.set_endpoint(endpoint)
for key, value in json.loads(params).items():
    getattr(request, "set_%s" % key)(value)
try:
    body = client.do_action_with_exception(request)
    print(json.dumps({"ok": json.loads(body)}))
except ServerException as e:
    print(json.dumps({"error": {"type": "ServerException", "code": e.get_error_code(),
                                "message": e.get_error_msg(), "status": e.get_http_status()}}))
except ClientException as e:
    print(json.dumps({"error": {"type": "ClientException", "code": e.get_error_code(),
                                "message": e.get_error_msg()}}))
