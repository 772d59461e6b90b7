using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.AI;

namespace Kaiyuan.Samples.StructuredExtraction;

/// <summary>A contact, as extracted from free text. The descriptions and limits go into the JSON schema the model must follow.</summary>
public sealed record Contact(
    [property: Description("The person's full name"), MaxLength(60)] string Name,
    [property: Description("The e-mail address, or null when the text gives none"), MaxLength(80)] string? Email,
    [property: Description("The phone number as written, or null"), MaxLength(30)] string? Phone,
    [property: Description("The company or organisation, or null"), MaxLength(60)] string? Company);

/// <summary>Structured output: <c>GetResponseAsync&lt;T&gt;()</c> turns a record into a JSON schema, and the model's answer into the record.</summary>
public static class ContactExtractor
{
    /// <summary>
    /// Extracts the contact that <paramref name="text"/> describes, or null when the model's answer did not finish (it
    /// ran out of tokens). Kaiyuan enforces the schema token by token, so a finished answer always parses.
    /// </summary>
    public static async Task<Contact?> ExtractAsync(IChatClient chat, string text, TextWriter output,
        ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        options = options?.Clone() ?? new ChatOptions { Temperature = 0 };
        // Strict, as with OpenAI: the object may hold only the record's properties (JSON Schema's default allows others).
        (options.AdditionalProperties ??= [])["strictJsonSchema"] = true;

        var response = await chat.GetResponseAsync<Contact>(
        [
            new ChatMessage(ChatRole.System, "Extract the contact details from the user's text. Use null for anything the text does not say."),
            new ChatMessage(ChatRole.User, text),
        ], options, cancellationToken: cancellationToken);

        if (response.FinishReason != ChatFinishReason.Stop || !response.TryGetResult(out var contact))
        {
            await output.WriteLineAsync($"No contact: the answer ended with {response.FinishReason}: {response.Text}");
            return null;
        }
        await output.WriteLineAsync($"Name:    {contact.Name}");
        await output.WriteLineAsync($"Email:   {contact.Email ?? "-"}");
        await output.WriteLineAsync($"Phone:   {contact.Phone ?? "-"}");
        await output.WriteLineAsync($"Company: {contact.Company ?? "-"}");
        return contact;
    }
}
