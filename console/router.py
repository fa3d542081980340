"""The console's pages under /console: each page module has its own router, included here."""

from __future__ import annotations

from fastapi import APIRouter

from console import admin, alerts, audit, inbox, models, monitoring, signin
from console.web import PREFIX

router = APIRouter(prefix=PREFIX, include_in_schema=False)
router.include_router(signin.router)
router.include_router(inbox.router)
router.include_router(models.router)
router.include_router(audit.router)
router.include_router(admin.router)
router.include_router(monitoring.router)
router.include_router(alerts.router)
