"""A containerd proxy snapshotter over any graph driver.

containerd (and through its CRI plugin, Kubernetes) reaches it as
``[proxy_plugins.NAME] type = "snapshot"``: :mod:`.service` speaks
``containerd.services.snapshots.v1.Snapshots`` on a unix socket,
:mod:`.snapshots` maps containerd's snapshot model onto the graph facade, and
:mod:`.store` keeps keys, kinds, labels and usage in ``drivebay.db``.
Needs the ``snapshotter`` extra (grpcio, protobuf).
"""
