"""Forms with length limits on every field (Flask-WTF adds the CSRF token)."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

from ..models import EMAIL_MAX, NAME_MAX, PASSWORD_MAX, PASSWORD_MIN


def _no_control_chars(form, field):
    if field.data and any(ord(c) < 32 for c in field.data):
        raise ValidationError("Control characters are not allowed.")


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    remember = BooleanField("Keep me signed in")


class SignupForm(FlaskForm):
    name = StringField("Full name", validators=[DataRequired(), Length(min=1, max=NAME_MAX), _no_control_chars])
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX), Email(check_deliverability=False)])
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX, message=f"Use {PASSWORD_MIN} to {PASSWORD_MAX} characters.")],
    )
    confirm = PasswordField("Repeat password", validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")])


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX), Email(check_deliverability=False)])


class ResetPasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX, message=f"Use {PASSWORD_MIN} to {PASSWORD_MAX} characters.")],
    )
    confirm = PasswordField("Repeat new password", validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")])


class ConfirmForm(FlaskForm):
    """An empty form: just the CSRF token, for POST buttons such as logout."""
