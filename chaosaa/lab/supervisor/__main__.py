"""``python -m chaosaa.lab.supervisor``: the lab supervisor process (``chaosaa lab up``)."""

from chaosaa.lab.supervisor import main

main()
