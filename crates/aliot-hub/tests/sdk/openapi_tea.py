"""The official Python Tea SDK (alibabacloud_iot20180120, signature V3 ACS3-HMAC-SHA256 by
default) against the hub's OpenAPI: Config(endpoint=HOST:PORT, protocol="http").

    python openapi_tea.py HOST:PORT ACCESS_KEY_ID ACCESS_KEY_SECRET 'ACTION' 'JSON_PARAMS'

JSON_PARAMS use the API's names (ProductKey, …): they go through the models' from_map.
Prints one JSON line: {"ok": <the answer's body>} or {"error": {"type", "code", "message"}}.
"""
import json
import re
import sys

from alibabacloud_iot20180120 import models
from alibabacloud_iot20180120.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from Tea.exceptions import TeaException

endpoint, ak, secret, action, params = sys.argv[1:6]
config = open_api_models.Config(access_key_id=ak, access_key_secret=secret,
                                endpoint=endpoint, protocol="http", read_timeout=20000)
client = Client(config)
request = getattr(models, "%sRequest" % action)().from_map(json.loads(params))
method = re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()
try:
    response = getattr(client, method)(request)
    print(json.dumps({"ok": response.body.to_map()}))
except TeaException as e:
    print(json.dumps({"error": {"type": type(e).__name__, "code": e.code, "message": e.message}}))
