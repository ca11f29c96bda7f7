"""A management client that sends exactly what qdstat and qdmanage of
qpid-dispatch 1.19.0 send (python/qpid_dispatch/management/client.py):
a `SyncRequestResponse` (a sender to the management node's address and a
receiver with a dynamic source and credit 1 for the replies, string
correlation ids "1", "2", ...), application-properties `operation`, `type`
or `entityType`, `name`, `identity`, and for QUERY `offset` and `count` as
longs (Python ints encode as AMQP long) with the body
`{attributeNames: [...]}`, paged by 500."""

from proton import Message
from proton.utils import BlockingConnection, SyncRequestResponse

PREFIX = "org.apache.qpid.dispatch."
NODE_TYPE = "org.amqp.management"
PAGE = 500


class ManagementError(Exception):
    def __init__(self, status, description):
        super().__init__(f"{status}: {description}")
        self.status = status
        self.description = description


class Management:
    """One connection to `url`; `router` names another router of the mesh
    (its `_topo/0/<router>/$management`), as `qdstat -r` does."""

    def __init__(self, url, router=None, timeout=10, edge=None):
        """`edge` names an edge router reached through the mesh (its
        `_edge/<edge>/$management`)."""
        self.connection = BlockingConnection(url, timeout=timeout)
        path = f"_topo/0/{router}/$management" if router else "$management"
        if edge:
            path = f"_edge/{edge}/$management"
        self.client = SyncRequestResponse(self.connection, path)

    def close(self):
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, body=None, expect=200, **properties):
        """Sends a request; returns the reply's body, or raises
        ManagementError when its statusCode is not `expect`."""
        request = Message()
        request.properties = {k: v for k, v in properties.items() if v is not None}
        request.body = body if body is not None else {}
        response = self.client.call(request)
        status = response.properties.get("statusCode")
        if status != expect:
            raise ManagementError(status, response.properties.get("statusDescription"))
        return response.body

    def node_call(self, operation, body=None, **properties):
        return self.call(body, operation=operation, name="self", type=NODE_TYPE, **properties)

    def query_page(self, entity_type, attribute_names=(), offset=0, count=PAGE):
        return self.node_call("QUERY", {"attributeNames": list(attribute_names)},
                              entityType=PREFIX + entity_type, offset=offset, count=count)

    def query(self, entity_type, attribute_names=()):
        """Every entity of the type as dicts, paged like Node.query."""
        names, rows, offset = None, [], 0
        while True:
            body = self.query_page(entity_type, attribute_names, offset, PAGE)
            names = names or body["attributeNames"]
            rows += body["results"]
            if len(body["results"]) < PAGE:
                return [dict(zip(names, r)) for r in rows]
            offset += PAGE

    def read(self, entity_type, name=None, identity=None):
        return self.call(operation="READ", type=PREFIX + entity_type, name=name, identity=identity)

    def create(self, entity_type, name, **attributes):
        return self.call(attributes, expect=201, operation="CREATE", type=PREFIX + entity_type,
                         name=name)

    def update(self, entity_type, name, **attributes):
        return self.call(attributes, operation="UPDATE", type=PREFIX + entity_type, name=name)

    def delete(self, entity_type, name):
        return self.call(None, expect=204, operation="DELETE", type=PREFIX + entity_type,
                         name=name)

    def mgmt_nodes(self):
        return self.node_call("GET-MGMT-NODES")
