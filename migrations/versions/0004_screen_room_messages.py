"""beyond the webcam: exam screen/display/copy/room-scan settings, extra minutes, room scans, messages

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 19:00:00

Issue 16. exams: ScreenShare (off/required), ScreenshotIntervalS, DisplaysPolicy (off/warn/block),
BlockCopyPaste, RequireRoomScan. exam_sessions: ExtraMinutes granted by a proctor. room_scans: the
clip of the desk and room recorded before the exam. session_messages: proctor <-> student messages
and raised hands. Screenshots of the shared screen are recordings of kind "screen" (no new column).
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('exams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ScreenShare', sa.String(length=16), server_default='off', nullable=False))
        batch_op.add_column(sa.Column('ScreenshotIntervalS', sa.Integer(), server_default='15', nullable=False))
        batch_op.add_column(sa.Column('DisplaysPolicy', sa.String(length=16), server_default='warn', nullable=False))
        batch_op.add_column(sa.Column('BlockCopyPaste', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('RequireRoomScan', sa.Boolean(), server_default='0', nullable=False))
    with op.batch_alter_table('exam_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ExtraMinutes', sa.Integer(), server_default='0', nullable=False))
    op.create_table(
        'room_scans',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('student_id', sa.Integer(), nullable=False),
        sa.Column('exam_id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=True),
        sa.Column('path', sa.String(length=255), nullable=False),
        sa.Column('mime', sa.String(length=64), nullable=False),
        sa.Column('bytes', sa.Integer(), nullable=False),
        sa.Column('duration_s', sa.Float(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['exam_id'], ['exams.ExamID'], name=op.f('fk_room_scans_exam_id_exams'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['session_id'], ['exam_sessions.SessionID'], name=op.f('fk_room_scans_session_id_exam_sessions'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['student_id'], ['students.ID'], name=op.f('fk_room_scans_student_id_students'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_room_scans')),
    )
    with op.batch_alter_table('room_scans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_room_scans_exam_id'), ['exam_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_room_scans_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_room_scans_student_id'), ['student_id'], unique=False)
    op.create_table(
        'session_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('student_id', sa.Integer(), nullable=False),
        sa.Column('sender', sa.String(length=16), nullable=False),
        sa.Column('author_id', sa.Integer(), nullable=True),
        sa.Column('preset', sa.String(length=32), nullable=True),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
        sa.CheckConstraint("sender IN ('proctor', 'student')", name=op.f('ck_session_messages_sender')),
        sa.ForeignKeyConstraint(['author_id'], ['students.ID'], name=op.f('fk_session_messages_author_id_students'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['session_id'], ['exam_sessions.SessionID'], name=op.f('fk_session_messages_session_id_exam_sessions'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['student_id'], ['students.ID'], name=op.f('fk_session_messages_student_id_students'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_session_messages')),
    )
    with op.batch_alter_table('session_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_session_messages_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_session_messages_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_session_messages_student_id'), ['student_id'], unique=False)


def downgrade():
    op.drop_table('session_messages')
    op.drop_table('room_scans')
    with op.batch_alter_table('exam_sessions', schema=None) as batch_op:
        batch_op.drop_column('ExtraMinutes')
    with op.batch_alter_table('exams', schema=None) as batch_op:
        for name in ('RequireRoomScan', 'BlockCopyPaste', 'DisplaysPolicy', 'ScreenshotIntervalS', 'ScreenShare'):
            batch_op.drop_column(name)
