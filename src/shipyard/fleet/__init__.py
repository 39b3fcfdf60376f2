"""The deploying side of ssh targets: connection, facts, agent client, provision, strategies."""
