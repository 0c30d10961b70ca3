"""Waves: one release across many targets (regions, accounts, services), wave by wave.

`manifest` reads and checks the release's manifest; `runner` runs it locally (`bgkit waves`),
one `bgkit run` process per target; GitHub Actions runs the same per-target command from its
job matrix (.github/workflows/waves.yml); `summary` writes the wave release's own record.
"""
