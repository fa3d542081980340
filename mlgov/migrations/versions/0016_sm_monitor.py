"""SageMaker monitoring: job definitions, processing (baselining) jobs, schedules publishing to an output URI

Revision ID: 0016_sm_monitor
Revises: 0015_mlflow
Create Date: 2026-12-02 12:30:00

- ``monitor_job_definitions``: what a schedule runs (endpoint, baseline, window, output URI), as SageMaker's
  DataQuality/ModelQuality job definitions name it.
- ``monitor_processing_jobs``: baselining jobs of SageMaker's model-monitor analyzer, run by mlgov's engine.
- ``monitor_schedules.output_uri`` (reports also published there, in SageMaker's layout) and
  ``monitor_schedules.job_definition`` (the job definition it runs, if any).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mlgov.db

revision = '0016_sm_monitor'
down_revision = '0015_mlflow'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'monitor_job_definitions',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('type', sa.String(length=32), nullable=False),
        sa.Column('endpoint', sa.String(length=63), nullable=False),
        sa.Column('baseline_id', sa.String(length=32), nullable=False),
        sa.Column('window_start', sa.String(length=32), nullable=False),
        sa.Column('window_end', sa.String(length=32), nullable=False),
        sa.Column('output_uri', sa.String(length=2048), nullable=False),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('created_at', mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['baseline_id'], ['monitor_baselines.id'],
                                name=op.f('fk_monitor_job_definitions_baseline_id_monitor_baselines')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_monitor_job_definitions')),
        sa.UniqueConstraint('name', name=op.f('uq_monitor_job_definitions_name')),
    )
    with op.batch_alter_table('monitor_job_definitions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_monitor_job_definitions_endpoint'), ['endpoint'], unique=False)
    op.create_table(
        'monitor_processing_jobs',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('failure_reason', sa.Text(), nullable=True),
        sa.Column('dataset_uri', sa.String(length=2048), nullable=False),
        sa.Column('output_uri', sa.String(length=2048), nullable=False),
        sa.Column('baseline_id', sa.String(length=32), nullable=True),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('created_at', mlgov.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('ended_at', mlgov.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_monitor_processing_jobs')),
        sa.UniqueConstraint('name', name=op.f('uq_monitor_processing_jobs_name')),
    )
    with op.batch_alter_table('monitor_schedules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('output_uri', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('job_definition', sa.String(length=63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('monitor_schedules', schema=None) as batch_op:
        batch_op.drop_column('job_definition')
        batch_op.drop_column('output_uri')
    op.drop_table('monitor_processing_jobs')
    with op.batch_alter_table('monitor_job_definitions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_monitor_job_definitions_endpoint'))
    op.drop_table('monitor_job_definitions')
