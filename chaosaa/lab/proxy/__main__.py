"""``python -m chaosaa.lab.proxy --config FILE``: the lab's link-proxy process."""

from chaosaa.lab.proxy import main

main()
