"""ONVIF cameras: health (device information, reachability, clock drift) and events (PullPoint).

``config`` is the device model (imports no onvif or zeep), ``driver`` the client, ``simulator`` a camera
that speaks the same SOAP over real HTTP, for tests and the demo. Video is out of scope.
"""
