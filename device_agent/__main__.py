"""``python -m device_agent``: how a board runs the agent copied over SFTP, without pip."""

import sys

from device_agent.cli import main

sys.exit(main())
