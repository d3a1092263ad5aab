"""drivebay-conformance: one suite of graph driver cases, run against every installed driver.

Run it with ``pytest --pyargs drivebay_conformance [--driver NAME]...``, with
``drivebay conformance``, or import it into a test module with
``from drivebay_conformance.suite import *``. See docs/conformance.md.
"""

__version__ = "0.1.0"
