"""py-consul against a TLS + ACL fsmhost server: HTTPS checked against the cluster's CA
(`verify=`), and tokens.

Usage: python secure.py HOST:HTTPS_PORT CA_FILE MANAGEMENT_TOKEN

Every check is an assertion; the script prints "ok" at the end.
"""

import sys

import consul
import requests

host, port = sys.argv[1].rsplit(":", 1)
ca, root = sys.argv[2], sys.argv[3]


def client(token=None, verify=ca):
    return consul.Consul(host=host, port=int(port), scheme="https", verify=verify, token=token)


admin = client(root)
assert admin.kv.put("app/x", "1") is True
assert admin.kv.put("secret/y", "2") is True

# A policy and a token through py-consul's ACL API (its bodies use lower-case names and
# JSON rules).
policy = admin.acl.policy.create(
    "app-readers", rules={"key_prefix": {"app/": {"policy": "read"}}}, description="app"
)
assert policy["Name"] == "app-readers", policy
made = admin.acl.token.create(description="reader", policies_name=["app-readers"])
secret = made["SecretID"]
assert made["Policies"][0]["Name"] == "app-readers", made

reader = client(secret)
index, entry = reader.kv.get("app/x")
assert entry["Value"] == b"1", entry
# The list is filtered to what the token may read.
index, entries = reader.kv.get("", recurse=True)
assert [e["Key"] for e in entries] == ["app/x"], entries
for call in (lambda: reader.kv.get("secret/y"), lambda: reader.kv.put("app/z", "3")):
    try:
        call()
        raise AssertionError("a refused call succeeded")
    except consul.ACLPermissionDenied:
        pass

# Anonymous: denied.
try:
    client().kv.get("app/x")
    raise AssertionError("anonymous read succeeded")
except consul.ACLPermissionDenied:
    pass

# Without the cluster's CA the server's certificate is refused.
try:
    client(root, verify=True).kv.get("app/x")
    raise AssertionError("the server's certificate was accepted without its CA")
except requests.exceptions.SSLError:
    pass

tokens = admin.acl.token.list()
assert any(t["AccessorID"] == made["AccessorID"] for t in tokens), tokens
print("ok")
